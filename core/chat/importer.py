"""Importing a chat from a JSON file: ours (``ChatStore.export_json``) or a plain OpenAI ``messages`` list.

Three shapes are taken: our export (an object with ``title``, ``model``, ``system_prompt``, ``params`` and
``messages``), an object with just ``messages`` (an OpenAI request body), and a bare ``[{"role", "content"}]`` list.
Content is a string or OpenAI's list of content parts, of which only ``{"type": "text"}`` ones are text; anything
else (an image, a tool call, a role other than system/user/assistant — "developer" is OpenAI's new name for
system) is refused with one line naming the message's index. The whole file is checked before the chat is created,
so a refused file leaves nothing behind; keys we do not know are ignored (newer exports, other tools' extras).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tuillm.core.chat.events import ReplyStats
from tuillm.core.chat.store import CHAT_LOAD_OPTIONS, DEFAULT_TITLE, MAX_TITLE_CHARS, Chat, ChatStore
from tuillm.core.errors import TuillmError
from tuillm.core.files import FileRefused, read_bounded
from tuillm.core.llama.options import Sampling
from tuillm.core.text import safe_line, safe_text

MAX_IMPORT_BYTES = 32 << 20  # a long chat with code is a few MiB; past this it is not a chat export
TITLE_CHARS = 60  # a title taken from the first message: as long as the one a new chat gets (conversation.py)
_FLAG = re.compile(r"^--[\w-]+: ")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STAT = 1 << 53  # past any count of tokens or seconds; a larger figure is not one a reply had


class ChatImportError(TuillmError):
    """A file that is not a chat this importer takes."""


@dataclass(frozen=True)
class ImportedMessage:
    role: str
    content: str
    complete: bool = True
    model: str = ""
    adapter: str = ""
    stats: dict[str, Any] | None = None


@dataclass(frozen=True)
class ImportedChat:
    title: str
    messages: list[ImportedMessage]
    model: str = ""
    system_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    adapter: str = ""  # the LoRA adapter over the model, and the load settings (ours: LoadOptions fields)
    load: dict[str, Any] = field(default_factory=dict)


def read_chat_file(path: str | Path, *, max_bytes: int = MAX_IMPORT_BYTES) -> ImportedChat:
    """Reads and checks a chat file; ``ChatImportError`` with one line when it is not one."""
    name = safe_line(str(path))
    try:
        data = read_bounded(path, max_bytes, shown=name, limit_of="a chat file")
    except FileRefused as exc:
        raise ChatImportError(str(exc)) from None
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ChatImportError(f"{name} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ChatImportError(f"{name} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise ChatImportError(f"{name}: the JSON holds a number too long to read") from None
    except RecursionError:
        raise ChatImportError(f"{name}: the JSON is nested too deeply") from None
    try:
        return parse_chat(value)
    except ChatImportError as exc:
        raise ChatImportError(f"{name}: {exc}") from None


def parse_chat(value: object) -> ImportedChat:
    """A chat from decoded JSON (any of the three shapes), every field checked."""
    if isinstance(value, list):
        head: Mapping[str, Any] = {}
        items: object = value
    elif isinstance(value, dict):
        if "messages" not in value:
            raise ChatImportError('no "messages": not a chat export or an OpenAI messages list')
        head, items = value, value["messages"]
    else:
        raise ChatImportError("not a chat: expected an object with messages or a list of messages")
    if not isinstance(items, list):
        raise ChatImportError('"messages" is not a list')
    messages = [_message(item, i) for i, item in enumerate(items)]
    system = _string(head, "system_prompt", "")
    if not system and messages and messages[0].role == "system":  # an OpenAI list: its system prompt is a message
        system, messages = messages[0].content, messages[1:]
    # Stripped here, as no message is: the chat options dialog shows the prompt in a TextArea, which draws an escape
    # sequence as it is (messages are shown through safe_text).
    system = safe_text(system)
    if not any(m.role in ("user", "assistant") for m in messages):
        raise ChatImportError("no user or assistant message to import")
    return ImportedChat(title=_title(head, messages), messages=messages, model=_string(head, "model", ""),
                        system_prompt=system, params=_params(head.get("params")),
                        adapter=_string(head, "adapter", ""), load=_load(head.get("load")))


def _message(item: object, index: int) -> ImportedMessage:
    where = f"message {index}"
    if not isinstance(item, dict):
        raise ChatImportError(f"{where} is not an object")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        if role is None:
            raise ChatImportError(f'{where} has no "role"')
        shown = _shown(role) if isinstance(role, str) else f"a {type(role).__name__}"
        raise ChatImportError(f"{where}: role {shown} is not one of system, user, assistant")
    if item.get("tool_calls") or item.get("function_call"):
        raise ChatImportError(f"{where}: tool calls cannot be imported")
    complete = item.get("complete", True)
    if not isinstance(complete, bool):
        raise ChatImportError(f'{where}: "complete" is not true or false')
    return ImportedMessage(role=ROLES[role], content=_content(item.get("content"), where), complete=complete,
                           model=_string(item, "model", "", where), adapter=_string(item, "adapter", "", where),
                           stats=_stats(item.get("stats"), where))


def _stats(stats: object, where: str) -> dict[str, Any] | None:
    """A reply's figures as the chat engine writes them (ReplyStats): the chat view formats them as numbers, so a
    string, NaN or infinity there broke it (or put the file's escape sequences in a bubble's header). Keys we do
    not know are left out: nothing reads them."""
    if stats is None:
        return None
    if not isinstance(stats, dict):
        raise ChatImportError(f'{where}: "stats" is not an object')
    out: dict[str, Any] = {}
    for f in fields(ReplyStats):
        value = stats.get(f.name)
        if value is None:
            continue
        if f.type == "str":
            good = isinstance(value, str) and value.isprintable() and len(value) <= 40
        else:  # a count (int) or seconds and rates (float, which a whole number may stand for)
            kinds = int if f.type == "int" else (int, float)
            # NaN and infinity fail the bounds (math.isfinite would overflow on a long whole number)
            good = isinstance(value, kinds) and not isinstance(value, bool) and 0 <= value <= MAX_STAT
        if not good:
            want = {"str": "a line of text", "int": "a whole number from 0"}.get(str(f.type), "a number from 0")
            # json.dumps writes control characters escaped: the file's text is shown, not run
            raise ChatImportError(f'{where}: "stats" {f.name}: {json.dumps(value)[:40]} is not {want}')
        out[f.name] = value
    return out or None


def _content(content: object, where: str) -> str:
    if isinstance(content, str):
        return _utf8(content, f"{where}: the content")
    if not isinstance(content, list):
        shown = "missing" if content is None else f"a {type(content).__name__}"
        raise ChatImportError(f"{where}: the content is {shown}, not text or a list of text parts")
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else None
            shown = f"of type {_shown(kind)}" if isinstance(kind, str) else "not a text part"
            raise ChatImportError(f"{where}: content part {j} is {shown}; only text can be imported")
        text = part.get("text")
        if not isinstance(text, str):
            raise ChatImportError(f"{where}: content part {j} has no text")
        parts.append(_utf8(text, f"{where}: content part {j}"))
    return "\n".join(parts)


def _shown(value: str) -> str:
    """A value from the file in an error: quoted, escapes written out (a control sequence is shown, not run)."""
    return json.dumps(value[:40])


def _utf8(text: str, what: str) -> str:
    # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 file or SQLite TEXT can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatImportError(f"{what} is not valid Unicode (a lone surrogate)") from None
    return text


def _string(data: Mapping[str, Any], key: str, default: str, where: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ChatImportError(f'{where + ": " if where else ""}"{key}" is not a string')
    return _utf8(value, f'{where + ": " if where else ""}"{key}"')


def _title(head: Mapping[str, Any], messages: list[ImportedMessage]) -> str:
    title = safe_line(_string(head, "title", "")).strip()[:MAX_TITLE_CHARS]
    if title:
        return title
    for m in messages:
        if m.role == "user" and m.content.strip():
            return safe_line(m.content.strip().splitlines()[0]).strip()[:TITLE_CHARS] or DEFAULT_TITLE
    return "Imported chat"


def _params(params: object) -> dict[str, Any]:
    """Sampling parameters: checked by ``Sampling`` as a chat's own are; none given is the defaults."""
    if params is None:
        return Sampling().to_json()
    if not isinstance(params, dict):
        raise ChatImportError('"params" is not an object')
    known = {f.name for f in fields(Sampling)}
    for key, value in params.items():  # one at a time, so the error names the key
        if key not in known:
            continue
        if key == "seed" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ChatImportError(f'"params" seed: {safe_line(repr(value))[:40]} is not a whole number')
        try:
            Sampling(**{key: value})
        except (TypeError, ValueError) as exc:
            # The declaration's message names the CLI flag ("--temp: ..."); the file's key is what to fix here.
            raise ChatImportError(f'"params" {key}: {_FLAG.sub("", safe_line(str(exc)))}') from None
    return Sampling.from_json(params).to_json()


def _load(load: object) -> dict[str, Any]:
    """A chat's load settings, checked by their declarations as the store checks them (a key we do not know is
    another version's, and ignored)."""
    if load is None:
        return {}
    if not isinstance(load, dict):
        raise ChatImportError('"load" is not an object')
    out = {}
    for key, value in load.items():
        option = CHAT_LOAD_OPTIONS.get(key)
        if option is None:
            continue
        try:
            out[key] = option.check(value)
        except (TypeError, ValueError) as exc:
            raise ChatImportError(f'"load" {key}: {_FLAG.sub("", safe_line(str(exc)))}') from None
    return out


def save_chat(store: ChatStore, chat: ImportedChat) -> Chat:
    """Creates the chat in ``store`` in one transaction: a failure or a signal part way leaves nothing (and one
    commit, not one a message, keeps a long chat's import quick)."""
    with store.transaction():
        created = store.create_chat(chat.title, model=chat.model, system_prompt=chat.system_prompt,
                                    params=chat.params)
        if chat.adapter or chat.load:
            store.set_model(created.id, chat.model, adapter=chat.adapter, load=chat.load)
        for m in chat.messages:
            store.add_message(created.id, m.role, m.content, stats=m.stats, complete=m.complete, model=m.model,
                              adapter=m.adapter)
    return store.get_chat(created.id)


def import_chat(store: ChatStore, path: str | Path) -> Chat:
    """Reads ``path`` and creates the chat it holds; the new chat."""
    return save_chat(store, read_chat_file(path))
