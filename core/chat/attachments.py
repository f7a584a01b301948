"""Text files attached to a chat message (``@path`` in the TUI's prompt, ``--attach`` on the CLI).

A file is read once, here, for both front ends: it must be a regular file (a FIFO, a device or a folder is refused
before anything is read, so nothing blocks), at most ``MAX_ATTACH_BYTES``, and UTF-8 text without NUL bytes; anything
else is refused with one line. The model sees the file as a fenced block under its name, the fence longer than any
backtick run in the file, so a file cannot close the block and write the rest of the message itself.
"""

from __future__ import annotations

import codecs
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tuillm.core.chat.backend import ChatMessage
from tuillm.core.errors import TuillmError
from tuillm.core.files import FileRefused, read_bounded, read_head, size_text
from tuillm.core.paths import expand_user
from tuillm.core.text import safe_line

MAX_ATTACH_BYTES = 1 << 20  # 1 MiB: far past any context a local model holds, small enough to read at once
# C0 controls but tab, newlines, form feed and ESC (text with colours): not in any text encoding of a file.
_BINARY_BYTES = re.compile(rb"[\x01-\x08\x0e-\x1a\x1c-\x1f]")
HEAD_BYTES = 8192  # what the prompt reads of an attachment on each key, to tell text from a binary file
CHARS_PER_TOKEN = 4  # the estimate used before a model is loaded to count with

# Code fence languages by suffix, so the block is highlighted; anything else is a plain block.
_LANGUAGES = {
    ".py": "python", ".md": "markdown", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go",
    ".c": "c", ".h": "c", ".cpp": "cpp", ".hpp": "cpp", ".cc": "cpp", ".java": "java", ".rb": "ruby",
    ".sh": "bash", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".html": "html",
    ".css": "css", ".sql": "sql", ".xml": "xml", ".ini": "ini", ".jsonl": "json",
}
_BACKTICKS = re.compile(r"`+")
# ``@path`` or ``@"path with spaces"``, at the start or after white space (so user@example.com is not one).
_TOKEN = re.compile(r'(?<!\S)@(?:"([^"\n]+)"|(\S+))')
# Code (fenced blocks and inline spans) is not searched for tokens: ``@property`` in pasted code is text.
_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)|`[^`\n]*`", re.S | re.M)
_TRAILING = ".,;:!?)]}'\""  # punctuation that ends a sentence after a token ("see @notes.md.")


class AttachmentError(TuillmError):
    """A file that cannot be attached: missing, not a regular file, too big, or not UTF-8 text."""


@dataclass(frozen=True)
class Attachment:
    name: str  # how the message names the file (as the user wrote it; terminal-safe)
    path: Path
    text: str

    def block(self) -> str:
        """The file as the model sees it: its name over a fenced block it cannot break out of."""
        longest = max((len(run) for run in _BACKTICKS.findall(self.text)), default=0)
        fence = "`" * max(3, longest + 1)
        body = self.text if self.text.endswith("\n") or not self.text else self.text + "\n"
        return f"File: {self.name}\n{fence}{_LANGUAGES.get(self.path.suffix.lower(), '')}\n{body}{fence}"


def read_attachment(path: str | Path, *, name: str | None = None, max_bytes: int = MAX_ATTACH_BYTES) -> Attachment:
    """Reads ``path`` for attaching (``~`` expanded); ``name`` is how the message names it (default: ``path``)."""
    shown = safe_line(name if name is not None else str(path)).strip()
    target = expand_user(path)
    try:
        data = read_bounded(path, max_bytes, shown=shown, limit_of="an attachment")  # as given: "" is refused
    except FileRefused as exc:
        raise AttachmentError(str(exc)) from None
    problem = text_problem(data)
    if problem is TextProblem.BINARY:
        raise AttachmentError(f"{shown} is a binary file: only text files can be attached")
    if problem is TextProblem.NOT_UTF8:
        raise AttachmentError(f"{shown} is not UTF-8 text (Latin-1?): only UTF-8 text files can be attached")
    return Attachment(name=shown, path=target, text=data.decode("utf-8").removeprefix("\ufeff"))


class TextProblem(Enum):
    """Why a file's bytes are not text to attach (the value: how the prompt's border says it)."""

    BINARY = "binary"
    NOT_UTF8 = "not UTF-8"


def text_problem(data: bytes, *, whole: bool = True) -> TextProblem | None:
    """What keeps ``data`` from being attached as text; ``whole`` False: only the file's first bytes (a character
    cut at their end is not a fault)."""
    if b"\0" in data:
        return TextProblem.BINARY
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=whole)
    except UnicodeDecodeError:
        # Control bytes text never holds: an image, an archive; otherwise text in another encoding.
        return TextProblem.BINARY if _BINARY_BYTES.search(data) else TextProblem.NOT_UTF8
    return None


def head_problem(path: str) -> TextProblem | None:
    """``text_problem`` of the file's first ``HEAD_BYTES``, for the prompt to say before sending what sending would
    refuse; None where it cannot be read (sending says why)."""
    try:
        return text_problem(read_head(path, HEAD_BYTES), whole=False)
    except (OSError, ValueError):
        return None


def with_attachments(text: str, attachments: list[Attachment]) -> str:
    """The message the model sees: what the user wrote, then each attached file's block."""
    return "\n\n".join([text.rstrip(), *(a.block() for a in attachments)])


@dataclass(frozen=True)
class Mention:
    """An ``@path`` in a message: where it is, and the path it names."""

    start: int
    end: int
    path: str


def mentions(text: str) -> Iterator[Mention]:
    """The ``@path`` tokens of ``text`` outside code, meant as files: ones that name something that exists, and ones
    that look like a path (a "/", a ".", a leading "~") so a mistyped name is said rather than sent as text. A
    token's sentence punctuation ("@notes.md.") is not part of the path unless the file's name has it."""
    code = [m.span() for m in _CODE.finditer(text)]
    for match in _TOKEN.finditer(text):
        if any(start <= match.start() < end for start, end in code):
            continue
        if match.group(1) is not None:  # quoted: exactly what is between the quotes
            yield Mention(match.start(), match.end(), match.group(1))
            continue
        raw = match.group(2)
        path = raw if _exists(raw) else raw.rstrip(_TRAILING)
        if path and (_exists(path) or "/" in path or "." in path or path.startswith("~")):
            yield Mention(match.start(), match.start() + 1 + len(path), path)


def _exists(path: str) -> bool:
    try:
        return os.path.lexists(os.path.expanduser(path))
    except (OSError, ValueError):  # a NUL in the text, a name too long
        return False


def attach_mentions(text: str) -> tuple[str, list[Attachment]]:
    """The message with every ``@path`` of ``text`` attached, and the attachments; the first file that cannot be
    attached raises ``AttachmentError`` (nothing is sent then). Each file is attached once, however often named."""
    attachments: dict[str, Attachment] = {}
    for mention in mentions(text):
        if mention.path not in attachments:
            attachments[mention.path] = read_attachment(mention.path)
    found = list(attachments.values())
    return (with_attachments(text, found) if found else text), found


# An attached file's block as ``Attachment.block`` writes it: the closing fence is the first line that is exactly the
# opening one (the file holds no backtick run that long), so the match is never ambiguous.
_BLOCK = re.compile(r"^File: (?P<name>[^\n]*)\n(?P<fence>`{3,})[^\n`]*\n(?P<body>.*?)^(?P=fence)$", re.S | re.M)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def collapse_attachments(content: str) -> str:
    """A stored message with each attached file's block shown as one line (name, lines, size) instead of the file:
    for a chat view, where a file of a few hundred KB drawn as a highlighted code block takes seconds. The model
    still gets the message as stored."""
    def line(match: re.Match[str]) -> str:
        body = match.group("body")
        lines = body.count("\n")
        name = _MARKDOWN_SPECIAL.sub(r"\\\1", match.group("name"))
        return f"📎 {name} · {lines:,} line{'' if lines == 1 else 's'}, {size_text(len(body.encode('utf-8')))}"

    return _BLOCK.sub(line, content)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` before a model is loaded to count them: about four characters a token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def overflow_warning(tokens: int, n_ctx: int, reply_tokens: int, *, estimated: bool = False) -> str | None:
    """What to tell the user when a prompt of ``tokens`` leaves less than ``reply_tokens`` of an ``n_ctx`` context
    for the reply; None when it fits."""
    room = n_ctx - reply_tokens
    if tokens <= room:
        return None
    about = "about " if estimated else ""
    text = (f"the chat with this message is {about}{tokens} tokens, more than the {room} the context leaves before "
            f"the reply ({n_ctx} - {reply_tokens} for the reply): older messages will be left out and the reply may "
            "be cut short")
    if tokens >= n_ctx:
        text += f"; a message longer than the whole context ({n_ctx}) is refused"
    if estimated:
        text += "; the count is an estimate (4 characters a token) until the model loads"
    return text


Count = Callable[[list[ChatMessage]], int]


@dataclass(frozen=True)
class Fit:
    """What a message with attachments costs: tokens per attachment, the whole prompt, and the warning if any."""

    tokens: list[int]  # per attachment, in order
    prompt_tokens: int  # the chat so far with this message, as the model would read it
    estimated: bool  # counted as characters / 4: no model was loaded to count with
    warning: str | None

    def summary(self, attachments: list[Attachment]) -> str:
        about = "~" if self.estimated else ""
        return ", ".join(f"{a.name} ({about}{n} tokens)" for a, n in zip(attachments, self.tokens, strict=True))


def measure(history: list[ChatMessage], message: str, attachments: list[Attachment], *, n_ctx: int,
            reply_tokens: int, count: Count | None = None) -> Fit:
    """Counts ``message`` after ``history`` with ``count`` (the loaded model's tokenizer and template; None: the
    chars/4 estimate) and checks it leaves ``reply_tokens`` of ``n_ctx``. Blocks while counting: front ends call it
    off their event loop."""
    if count is None:
        prompt = sum(estimate_tokens(m["content"]) for m in history) + estimate_tokens(message)
        return Fit([estimate_tokens(a.block()) for a in attachments], prompt, True,
                   overflow_warning(prompt, n_ctx, reply_tokens, estimated=True))
    empty = count([{"role": "user", "content": ""}])
    tokens = [count([{"role": "user", "content": a.block()}]) - empty for a in attachments]
    prompt = count([*history, {"role": "user", "content": message}])
    return Fit(tokens, prompt, False, overflow_warning(prompt, n_ctx, reply_tokens))
