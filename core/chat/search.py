"""Finding chats and messages: titles filtered as the user types, and full-text search over every message.

Full text goes through the SQLite FTS5 index ``messages_fts`` (built by a step of ``schema.MIGRATIONS`` and kept in
step with ``messages`` by triggers). The user's words never reach FTS5's query language as syntax: they are cut into
words (as FTS5's tokenizer cuts them) and each is quoted, so ``"``, ``AND(`` or ``*`` search for words or for
nothing, never raise. An SQLite built without FTS5 has no index: the same search runs as a substring match (LIKE),
slower and without ranking, and ``has_index`` says so once to whoever shows the results.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from tuillm.core.text import safe_line

DEFAULT_LIMIT = 50
SNIPPET_TOKENS = 12  # words of context FTS5 shows around a match
SNIPPET_CHARS = 80  # the same for the substring fallback, in characters
# Marks around a match in FTS5's snippet: private-use characters, which chat text practically never holds.
_OPEN, _CLOSE = "\ue000", "\ue001"
# FTS5's unicode61 tokenizer keeps letters and digits and splits on the rest; "_" is a separator there too.
_WORD = re.compile(r"[^\W_]+")
_FTS_SQL = f"""
    SELECT m.id, m.chat_id, m.role, m.created, c.title,
           snippet(messages_fts, 0, '{_OPEN}', '{_CLOSE}', '…', {SNIPPET_TOKENS}) AS snippet
    FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid JOIN chats c ON c.id = m.chat_id
    WHERE messages_fts MATCH ? ORDER BY rank, m.created DESC, m.id DESC LIMIT ?"""


@dataclass(frozen=True)
class Hit:
    """A message that matched, with a one-line excerpt around the match (safe to show on a terminal)."""

    message_id: int
    chat_id: int
    chat_title: str
    role: str
    created: float
    snippet: str
    marks: tuple[tuple[int, int], ...] = ()  # (start, end) of each matched stretch of ``snippet``


@dataclass(frozen=True)
class Found:
    hits: list[Hit]
    indexed: bool  # False: no full-text index (an SQLite without FTS5): a substring match, newest first

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)


def words(text: str) -> list[str]:
    """The words of a query, as the index cut the messages: punctuation and FTS5 operators' symbols are dropped."""
    return _WORD.findall(text)


def fts_query(text: str) -> str | None:
    """``text`` as an FTS5 query that is only words: every word must occur, the last one as a prefix (the user may
    still be typing it). None when there is no word to look for."""
    found = words(text)
    if not found:
        return None
    # A quoted string is one phrase of literal words; "" escapes a quote (none survive ``words`` anyway).
    quoted = ['"' + w.replace('"', '""') + '"' for w in found]
    return " ".join(quoted) + "*"


def title_matches(title: str, text: str) -> bool:
    """The chat list's filter: every word typed occurs in the title, ignoring case (``casefold``: ß, İ…)."""
    folded = title.casefold()
    return all(word.casefold() in folded for word in text.split())


def has_index(db: sqlite3.Connection) -> bool:
    """Whether the database has the full-text index (not when the SQLite that migrated it lacked FTS5)."""
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'").fetchone()
    return row is not None


def search_messages(db: sqlite3.Connection, text: str, limit: int = DEFAULT_LIMIT) -> Found:
    """Messages of every chat that contain all the words of ``text``: the best matches first (bm25), the newest first
    among equals; at most ``limit``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a search limit is a whole number of at least 1, not {limit!r}")
    query, indexed = fts_query(text), has_index(db)
    if query is None:
        return Found([], indexed)
    if not indexed:
        return Found(_substring_search(db, words(text), limit), indexed)
    return Found([_hit(row, *_marked(_text(row[5]))) for row in db.execute(_FTS_SQL, (query, limit)).fetchall()],
                 indexed)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def _hit(row: sqlite3.Row | tuple[object, ...], snippet: str, marks: tuple[tuple[int, int], ...]) -> Hit:
    created = row[3]
    return Hit(message_id=int(row[0]), chat_id=int(row[1]), role=_text(row[2]),
               created=float(created) if isinstance(created, int | float) else 0.0,
               chat_title=_text(row[4]), snippet=snippet, marks=marks)


def _marked(snippet: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """FTS5's snippet with its marks taken out: the text (one safe line) and where the marks were."""
    out: list[str] = []
    marks: list[tuple[int, int]] = []
    length, start = 0, None
    for piece in re.split(f"([{_OPEN}{_CLOSE}])", snippet):
        if piece == _OPEN:
            start = length
        elif piece == _CLOSE:
            if start is not None and length > start:
                marks.append((start, length))
            start = None
        else:
            piece = safe_line(piece)
            out.append(piece)
            length += len(piece)
    return "".join(out), tuple(marks)


def _substring_search(db: sqlite3.Connection, found: list[str], limit: int) -> list[Hit]:
    """Without an index: every word as a substring (LIKE: case-insensitive for ASCII only), newest first."""
    where = " AND ".join(["m.content LIKE ? ESCAPE '\\'"] * len(found))
    patterns = ["%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in found]
    rows = db.execute(
        "SELECT m.id, m.chat_id, m.role, m.created, c.title, m.content FROM messages m "
        f"JOIN chats c ON c.id = m.chat_id WHERE {where} ORDER BY m.created DESC, m.id DESC LIMIT ?",
        (*patterns, limit)).fetchall()
    return [_hit(row, *excerpt(_text(row[5]), found)) for row in rows]


def excerpt(content: str, found: list[str], width: int = SNIPPET_CHARS) -> tuple[str, tuple[tuple[int, int], ...]]:
    """About ``width`` characters of ``content`` around the first word found, as one safe line, with every
    occurrence of the words marked."""
    line = safe_line(content)
    folded = line.casefold() if len(line.casefold()) == len(line) else line.lower()  # positions must line up
    first = min((i for i in (folded.find(w.casefold()) for w in found) if i >= 0), default=0)
    begin = max(0, min(first - width // 3, len(line) - width))
    end = min(len(line), begin + width)
    text = ("…" if begin else "") + line[begin:end] + ("…" if end < len(line) else "")
    shift = 1 if begin else 0  # the leading "…"
    marks: list[tuple[int, int]] = []
    for word in found:
        for match in re.finditer(re.escape(word.casefold()), folded[begin:end]):
            marks.append((match.start() + shift, match.end() + shift))
    return text, tuple(sorted(set(marks)))
