"""Conversations on disk: one SQLite file (WAL) with chats and their messages.

The schema grows by appending steps to ``schema.MIGRATIONS``; ``PRAGMA user_version`` records how many ran. A streaming
assistant message is written while it grows (``core.chat.saver.StreamingSaver``), so a killed app loses at most the
last half second of a reply.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuillm.core.chat.branches import AT_LEAF, Branches, Parent, path
from tuillm.core.chat.schema import MIGRATIONS
from tuillm.core.chat.search import DEFAULT_LIMIT, Found, search_messages, title_matches
from tuillm.core.errors import TuillmError
from tuillm.core.files import write_atomic
from tuillm.core.llama.options import LOAD_OPTIONS, LORA_SCALE, Sampling
from tuillm.core.paths import data_dir
from tuillm.core.text import safe_line

DEFAULT_TITLE = "New chat"  # a chat's title until its first message names it
MAX_TITLE_CHARS = 200  # a title is a line in lists and dialogs: a longer one (pasted, imported) is cut
# What a chat keeps of how its model was loaded (chats.load, by LoadOptions field name), checked by these on read.
CHAT_LOAD_OPTIONS = {o.name: o for o in (*LOAD_OPTIONS, LORA_SCALE)}


class StoreError(TuillmError):
    """The chat database cannot be opened, read or written."""


def default_path() -> Path:
    return data_dir() / "chats.sqlite3"


@dataclass(frozen=True)
class Message:
    id: int
    chat_id: int
    role: str
    content: str
    stats: dict[str, Any] | None
    complete: bool  # False: an assistant reply that was still streaming when last saved
    created: float
    model: str = ""  # the model file that wrote a reply ('' when not known)
    adapter: str = ""  # the LoRA adapter GGUF applied over it ('' for none)
    # (position from 1, count) among the replies or edits that branch from the same point; None: no alternatives
    alternatives: tuple[int, int] | None = None
    parent_id: int | None = None  # the message this one follows (None: a chat's first, or an alternative of it)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "content": self.content, "stats": self.stats,
                "complete": self.complete, "created": self.created, "model": self.model, "adapter": self.adapter}


@dataclass(frozen=True)
class Chat:
    id: int
    title: str
    model: str
    system_prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    draft: str = ""  # what the user typed in this chat's prompt and has not sent
    adapter: str = ""  # the LoRA adapter GGUF loaded over the model ('' for none)
    load: dict[str, Any] = field(default_factory=dict)  # as stored; read it through ``load_values``

    @property
    def load_values(self) -> dict[str, Any]:
        """The load settings the chat keeps (LoadOptions fields; None: auto), checked by their declarations."""
        return _checked_load(self.load)

    @property
    def sampling(self) -> Sampling:
        """The chat's sampling parameters. A row that another version or a hand edit left with values
        ``Sampling`` refuses (out of range, wrong type) gives the defaults: one bad row must not stop the app."""
        try:
            sampling = Sampling.from_json(self.params)
        except (TypeError, ValueError):
            return Sampling()
        seed = sampling.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            return Sampling()
        return sampling

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "model": self.model, "system_prompt": self.system_prompt,
                "params": self.params, "created": self.created, "updated": self.updated, "adapter": self.adapter,
                "load": self.load_values}


def _json_object(text: object) -> dict[str, Any] | None:
    """A stored JSON column: the object it holds, or None when the text is not a JSON object (a hand edit, another
    version, damage): one bad row must not stop the app."""
    if not isinstance(text, str | bytes) or not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
        return None
    return value if isinstance(value, dict) else None


def _params(text: object) -> dict[str, Any]:
    """A chat row's params: a JSON object, or {} (the defaults) when the stored text is not one."""
    return _json_object(text) or {}


def _checked_load(load: Mapping[str, Any]) -> dict[str, Any]:
    """What the declarations take of a chat's load settings: a value another version or a hand edit left bad is
    dropped (that setting falls back to the settings file's)."""
    out: dict[str, Any] = {}
    for name, value in load.items():
        with contextlib.suppress(KeyError, ValueError):
            out[name] = CHAT_LOAD_OPTIONS[name].check(value)
    return out


def _text(value: object) -> str:
    """A TEXT column as str: SQLite stores whatever a writer gave it (a number, a blob, NULL in an old file)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _time(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _chat(row: sqlite3.Row) -> Chat:
    return Chat(id=row["id"], title=_text(row["title"]), model=_text(row["model"]),
                system_prompt=_text(row["system_prompt"]), params=_params(row["params"]),
                created=_time(row["created"]), updated=_time(row["updated"]), draft=_text(row["draft"]),
                adapter=_text(row["adapter"]), load=_params(row["load"]))


def _message(row: sqlite3.Row, alternatives: tuple[int, int] | None = None) -> Message:
    return Message(id=row["id"], chat_id=row["chat_id"], role=_text(row["role"]), content=_text(row["content"]),
                   stats=_json_object(row["stats"]), complete=bool(row["complete"]), created=_time(row["created"]),
                   model=_text(row["model"]), adapter=_text(row["adapter"]), parent_id=row["parent_id"],
                   alternatives=alternatives)


class ChatStore(Branches):
    """Thread-safe (one connection behind a lock): the UI thread lists while a worker saves a streaming reply."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.RLock()
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the chat database ({exc})") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a readable chat database ({exc})") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: written by a newer tuillm (schema {version}); upgrade tuillm")
        for number in range(version, len(MIGRATIONS)):
            # executescript commits on its own; the version bump rides in the same script so a crash between
            # the two cannot leave a half-migrated file marked as done.
            try:
                self._db.executescript(
                    f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;")
            except sqlite3.OperationalError as exc:  # "no such module": an SQLite without FTS5; search falls back
                if "no such module" not in str(exc):
                    raise
                self._db.execute("ROLLBACK")  # (executescript would commit the half-run step first)
                self._db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: {exc}") from None
            except UnicodeEncodeError:  # a lone surrogate: a file name's byte that is not UTF-8 (sqlite3 takes UTF-8)
                raise StoreError("a name that is not UTF-8 (a model file's?) cannot be kept in the chat database; "
                                 "rename the file") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes inside commit together or not at all: an import stopped part way leaves nothing."""
        with self._lock:
            self._run("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:  # SQLite may have ended it itself on the error (SQLITE_FULL)
                    self._run("ROLLBACK")
                raise
            self._run("COMMIT")

    # --- chats ---
    def create_chat(self, title: str = DEFAULT_TITLE, *, model: str = "", system_prompt: str = "",
                    params: Mapping[str, Any] | None = None) -> Chat:
        now = time.time()
        cur = self._run(
            "INSERT INTO chats (title, model, system_prompt, params, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
            (title, model, system_prompt, json.dumps(dict(params or {})), now, now))
        return self.get_chat(int(cur.lastrowid or 0))

    def _row(self, table: str, row_id: int, noun: str) -> sqlite3.Row:
        row = self._run(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise StoreError(f"no {noun} with id {row_id}")
        return row

    def get_chat(self, chat_id: int) -> Chat:
        return _chat(self._row("chats", chat_id, "chat"))

    def list_chats(self) -> list[Chat]:
        return [_chat(r) for r in self._run("SELECT * FROM chats ORDER BY updated DESC, id DESC").fetchall()]

    def update_chat(self, chat_id: int, *, title: str | None = None, model: str | None = None,
                    system_prompt: str | None = None, params: Mapping[str, Any] | None = None) -> Chat:
        chat = self.get_chat(chat_id)
        self._run(
            "UPDATE chats SET title = ?, model = ?, system_prompt = ?, params = ?, updated = ? WHERE id = ?",
            (chat.title if title is None else title, chat.model if model is None else model,
             chat.system_prompt if system_prompt is None else system_prompt,
             json.dumps(chat.params if params is None else dict(params)), time.time(), chat_id))
        return self.get_chat(chat_id)

    def set_model(self, chat_id: int, model: str, *, adapter: str = "",
                  load: Mapping[str, Any] | None = None) -> Chat:
        """The chat's model, adapter and load settings (LoadOptions fields; what no declaration takes is dropped)."""
        self._run("UPDATE chats SET model = ?, adapter = ?, load = ?, updated = ? WHERE id = ?",
                  (model, adapter, json.dumps(_checked_load(load or {})), time.time(), chat_id))
        return self.get_chat(chat_id)

    def set_draft(self, chat_id: int, text: str) -> None:
        """Keep the chat's unsent text. Not a change of the chat: its place in the list (``updated``) stays."""
        if not isinstance(text, str):
            raise StoreError(f"a draft is text, not {type(text).__name__}")
        self._run("UPDATE chats SET draft = ? WHERE id = ?", (text, chat_id))

    def rename_chat(self, chat_id: int, title: str) -> Chat:
        """One line without control sequences (typed, pasted, or a message's first line), cut to MAX_TITLE_CHARS:
        the rename dialog's field draws a title as it is."""
        title = safe_line(title).strip()[:MAX_TITLE_CHARS]
        if not title:
            raise StoreError("a chat title cannot be empty")
        return self.update_chat(chat_id, title=title)

    def delete_chat(self, chat_id: int) -> None:
        self.get_chat(chat_id)
        self._run("DELETE FROM chats WHERE id = ?", (chat_id,))

    def search(self, text: str) -> list[Chat]:
        """Chats whose title holds every word of ``text`` (ignoring case), newest first: the chat list's filter."""
        return [chat for chat in self.list_chats() if title_matches(chat.title, text)]

    def search_messages(self, text: str, limit: int = DEFAULT_LIMIT) -> Found:
        """Messages of every chat holding all the words of ``text``, best match first (``core.chat.search``)."""
        with self._lock:
            try:
                return search_messages(self._db, text, limit)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: {exc}") from None

    # --- messages ---
    def add_message(self, chat_id: int, role: str, content: str, *, stats: Mapping[str, Any] | None = None,
                    complete: bool = True, model: str = "", adapter: str = "", parent: Parent = AT_LEAF) -> Message:
        """``parent``: the message it follows (None: a first message), by default the current branch's last."""
        if role not in ("system", "user", "assistant"):
            raise StoreError(f"unknown message role {role!r}")
        now = time.time()
        with self._lock:
            cur = self._run(
                "INSERT INTO messages (chat_id, role, content, stats, complete, created, model, adapter, parent_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chat_id, role, content, json.dumps(dict(stats)) if stats else None, int(complete), now, model,
                 adapter, self._parent(chat_id, parent)))
            self._run("UPDATE chats SET updated = ?, leaf_id = ? WHERE id = ?", (now, cur.lastrowid, chat_id))
            return self.get_message(int(cur.lastrowid or 0))

    def get_message(self, message_id: int) -> Message:
        return _message(self._row("messages", message_id, "message"))

    def update_message(self, message_id: int, content: str, *, stats: Mapping[str, Any] | None = None,
                       complete: bool | None = None) -> None:
        sets, args = ["content = ?"], [content]
        if stats is not None:
            sets.append("stats = ?")
            args.append(json.dumps(dict(stats)))
        if complete is not None:
            sets.append("complete = ?")
            args.append(int(complete))
        self._run(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*args, message_id))

    def messages(self, chat_id: int, upto: int | None = None) -> list[Message]:
        """The current branch (``upto``: the branch up to that message), each with its ``alternatives``."""
        with self._lock:
            return [_message(r, alts) for r, alts in path(self._run, chat_id, upto)]

    def conversation(self, chat_id: int, upto: int | None = None) -> list[dict[str, str]]:
        """The chat as the engine takes it: the system prompt first (if any), then the branch's messages."""
        chat = self.get_chat(chat_id)
        out = [{"role": "system", "content": chat.system_prompt}] if chat.system_prompt else []
        out += [{"role": m.role, "content": m.content} for m in self.messages(chat_id, upto)]
        return out

    # --- export ---
    def export_json(self, chat_id: int) -> dict[str, Any]:
        data = self.get_chat(chat_id).to_json()
        data["messages"] = [m.to_json() for m in self.messages(chat_id)]
        return data

    def export_markdown(self, chat_id: int) -> str:
        chat = self.get_chat(chat_id)
        lines = [f"# {chat.title}", ""]
        if chat.model:
            lines += [f"Model: `{chat.model}`", ""]
        if chat.system_prompt:
            lines += ["## System", "", chat.system_prompt, ""]
        for m in self.messages(chat_id):
            lines += [f"## {m.role.capitalize()}{'' if m.complete else ' (interrupted)'}", "", m.content, ""]
        return "\n".join(lines).rstrip() + "\n"

    def export(self, chat_id: int, path: str | Path) -> Path:
        """Write ``.json`` or Markdown (any other suffix) to a temporary name, then rename it into place."""
        target = Path(path)
        if target.suffix.lower() == ".json":
            text = json.dumps(self.export_json(chat_id), indent=2, ensure_ascii=False) + "\n"
        else:
            text = self.export_markdown(chat_id)
        try:
            write_atomic(target, text.encode("utf-8"))
        except OSError as exc:
            raise StoreError(f"{target}: cannot write the export ({exc.strerror or exc})") from None
        return target
