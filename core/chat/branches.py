"""A chat's messages as a tree: the queries behind ``ChatStore``'s branches (it calls them under its lock).

Every message records its parent, the message it follows (NULL for a chat's first message and for the
alternatives of it). Regenerating a reply or editing a message adds a sibling instead of replacing anything; the
chat row's ``leaf_id`` is the last message of the branch shown, and a branch is the path from it up to the root.
A parent is always written before its children, so it has the smaller id: the newest message under any point is a
leaf, and every walk requires ``parent_id < id`` so that a hand-edited cycle cannot loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuillm.core.chat.store import Chat, Message

Run = Callable[..., sqlite3.Cursor]  # ChatStore._run: (sql, args) -> cursor, database errors as StoreError


class At(Enum):
    LEAF = "the end of the chat's current branch"


AT_LEAF = At.LEAF
Parent = int | None | At  # where a new message goes: after that message, as a new first message, or at the leaf

_UP = """WITH RECURSIVE up(id) AS (SELECT ?1 UNION ALL
             SELECT m.parent_id FROM messages m JOIN up ON m.id = up.id WHERE m.parent_id < m.id)"""
_DOWN = """WITH RECURSIVE down(id) AS (SELECT ?1 UNION ALL
               SELECT m.id FROM messages m JOIN down ON m.parent_id = down.id WHERE m.id > down.id)"""
# Where a message stands among its siblings (same chat, same parent): its place from 1, and how many there are.
_SIBLINGS = "FROM messages s WHERE s.chat_id = m.chat_id AND s.parent_id IS m.parent_id"
_PATH = f"""{_UP} SELECT m.*, (SELECT COUNT(*) {_SIBLINGS} AND s.id <= m.id) AS alt_place,
                             (SELECT COUNT(*) {_SIBLINGS}) AS alt_count
            FROM up JOIN messages m ON m.id = up.id WHERE m.chat_id = ?2 ORDER BY m.id"""

# Never copied into a fork as they are: the row's identity, its place in the tree, what is per chat.
_FORK_SKIPS = {"chats": {"id", "title", "created", "updated", "draft", "leaf_id"},
               "messages": {"id", "chat_id", "parent_id"}}
FORK_SUFFIX = " (fork)"


def leaf(run: Run, chat_id: int) -> int | None:
    """The current branch's last message: the chat's ``leaf_id`` while it is one of the chat's messages, else the
    newest message (a chat written before branches, or a leaf removed by hand). None: no messages."""
    row = run("SELECT m.id FROM chats c JOIN messages m ON m.id = c.leaf_id AND m.chat_id = c.id WHERE c.id = ?",
              (chat_id,)).fetchone()
    if row is None:
        row = run("SELECT MAX(id) FROM messages WHERE chat_id = ?", (chat_id,)).fetchone()
    return None if row is None else row[0]


def path(run: Run, chat_id: int, upto: int | None = None) -> list[tuple[sqlite3.Row, tuple[int, int] | None]]:
    """The rows from the root to ``upto`` (None: the current leaf), each with its (place, count) among its
    alternatives, None when it has none."""
    end = leaf(run, chat_id) if upto is None else upto
    if end is None:
        return []
    rows = run(_PATH, (end, chat_id)).fetchall()
    return [(r, (r["alt_place"], r["alt_count"]) if r["alt_count"] > 1 else None) for r in rows]


def parent_for(run: Run, chat_id: int, parent: Parent) -> int | None:
    """The parent id a new message of ``chat_id`` takes; ValueError when ``parent`` is not a message of that chat."""
    if parent is AT_LEAF:
        return leaf(run, chat_id)
    if parent is not None and run("SELECT 1 FROM messages WHERE id = ? AND chat_id = ?",
                                  (parent, chat_id)).fetchone() is None:
        raise ValueError(f"message {parent} is not in chat {chat_id}")
    return parent


def newest_under(run: Run, message_id: int) -> int:
    """The newest message in the subtree of ``message_id`` (itself included): a leaf, the branch last written."""
    return int(run(f"{_DOWN} SELECT MAX(id) FROM down", (message_id,)).fetchone()[0])


def activate_branch(run: Run, chat_id: int, message_id: int) -> None:
    """Show the branch through ``message_id``: the current one if it is on it, else the newest under it."""
    current = leaf(run, chat_id)
    if current is not None and run(f"{_UP} SELECT 1 FROM up WHERE id = ?2", (current, message_id)).fetchone():
        return
    run("UPDATE chats SET leaf_id = ? WHERE id = ?", (newest_under(run, message_id), chat_id))


def removed(run: Run, chat_id: int, parent_id: int | None) -> None:
    """A message under ``parent_id`` was deleted (a reply that failed before its first token): if it was the leaf,
    the branch goes back to the newest one under its parent (the earlier reply, when it was an alternative)."""
    if run("SELECT 1 FROM chats c JOIN messages m ON m.id = c.leaf_id WHERE c.id = ?", (chat_id,)).fetchone():
        return
    new = newest_under(run, parent_id) if parent_id is not None else None
    run("UPDATE chats SET leaf_id = ? WHERE id = ?", (new, chat_id))


def sibling(run: Run, message_id: int, step: int) -> int | None:
    """The alternative ``step`` places after (before, negative) ``message_id``; None past either end."""
    ids = [r[0] for r in run("SELECT s.id FROM messages m JOIN messages s ON s.chat_id = m.chat_id "
                             "AND s.parent_id IS m.parent_id WHERE m.id = ? ORDER BY s.id", (message_id,))]
    if message_id not in ids:
        return None
    place = ids.index(message_id) + step
    return ids[place] if 0 <= place < len(ids) else None


def _columns(run: Run, table: str) -> str:
    """The table's columns a fork copies as they are (all present ones: columns added later are copied too)."""
    names = [r[1] for r in run(f"PRAGMA table_info({table})") if r[1] not in _FORK_SKIPS[table]]
    return ", ".join(f'"{n}"' for n in names)


def fork_chat(run: Run, chat_id: int, message_id: int, now: float) -> int:
    """A new chat (same model, system prompt, sampling: every column but the title and times) holding the branch
    from the root to ``message_id``, as one linear branch. Returns its id."""
    ids = [row["id"] for row, _ in path(run, chat_id, message_id)]
    if not ids or ids[-1] != message_id:
        raise ValueError(f"message {message_id} is not in chat {chat_id}")
    chat_cols, message_cols = _columns(run, "chats"), _columns(run, "messages")
    run("BEGIN IMMEDIATE")
    try:
        title = (f"CASE WHEN title LIKE '%{FORK_SUFFIX}' THEN title ELSE title || '{FORK_SUFFIX}' END")
        new_chat = run(f"INSERT INTO chats (title, created, updated, {chat_cols}) "
                       f"SELECT {title}, ?, ?, {chat_cols} FROM chats WHERE id = ?", (now, now, chat_id)).lastrowid
        parent = None
        for old in ids:
            parent = run(f"INSERT INTO messages (chat_id, parent_id, {message_cols}) "
                         f"SELECT ?, ?, {message_cols} FROM messages WHERE id = ?", (new_chat, parent, old)).lastrowid
        run("UPDATE chats SET leaf_id = ? WHERE id = ?", (parent, new_chat))
        run("COMMIT")
    except BaseException:
        run("ROLLBACK")
        raise
    return int(new_chat or 0)



def _store_error(text: str) -> Exception:
    from tuillm.core.chat.store import StoreError  # the store imports this module: its error is known at run time

    return StoreError(text)


class Branches:
    """``ChatStore``'s branch operations (a mixin over the store's connection and lock)."""

    _lock: threading.RLock
    if TYPE_CHECKING:
        def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor: ...
        def get_chat(self, chat_id: int) -> Chat: ...
        def get_message(self, message_id: int) -> Message: ...

    def _parent(self, chat_id: int, parent: Parent) -> int | None:
        try:
            return parent_for(self._run, chat_id, parent)
        except ValueError as exc:
            raise _store_error(str(exc)) from None

    def delete_message(self, message_id: int) -> None:
        """Delete a message and what follows it on every branch (a reply that failed before its first token)."""
        with self._lock:
            message = self.get_message(message_id)
            self._run("DELETE FROM messages WHERE id = ?", (message_id,))
            removed(self._run, message.chat_id, message.parent_id)

    def activate(self, message_id: int) -> None:
        """Make the branch holding ``message_id`` its chat's current one (the newest branch under it when it is
        not on the current one): browsing alternatives, opening a search hit."""
        with self._lock:
            activate_branch(self._run, self.get_message(message_id).chat_id, message_id)

    def alternative(self, message_id: int, step: int) -> int | None:
        """Show the alternative ``step`` places after (negative: before) ``message_id``; its id, or None (and
        nothing changes) past either end."""
        with self._lock:
            chat_id = self.get_message(message_id).chat_id
            other = sibling(self._run, message_id, step)
            if other is not None:
                activate_branch(self._run, chat_id, other)
            return other

    def fork(self, message_id: int) -> Chat:
        """A new chat holding the branch up to ``message_id``, titled "… (fork)", with the same model, system
        prompt and sampling."""
        with self._lock:
            message = self.get_message(message_id)
            try:
                return self.get_chat(fork_chat(self._run, message.chat_id, message_id, time.time()))
            except ValueError as exc:
                raise _store_error(str(exc)) from None
