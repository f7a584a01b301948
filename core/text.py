"""Text from files, models and templates made safe to show on a terminal.

A GGUF's ``general.name``, a file name, a chat template's output or a model's reply can carry escape sequences:
OSC 52 writes the user's clipboard, OSC 0 renames the terminal, CSI moves the cursor and garbles a table.
``safe_text`` removes every control sequence and control character except newline and tab; what is left is
printable text. Every string from outside goes through it before the CLI prints it or the TUI shows it.
"""

from __future__ import annotations

import re

# ESC-introduced sequences: CSI (ESC [ params final), OSC/DCS/SOS/PM/APC strings up to BEL or ST (ESC \), or an
# unterminated one to the end, then the two-byte ESC forms. The 8-bit C1 forms (0x9B CSI, 0x9D OSC, 0x90 DCS...)
# likewise. Then any C0/C1 control character left over except \t and \n (\r too: it rewrites the line).
_SEQUENCE = re.compile(
    r"""
    (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?       # CSI
  | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])                    # OSC, DCS, SOS, PM, APC ...
    (?:[^\x07\x1b\x9c]*)(?:\x07|\x1b\\|\x9c)?                  # ... up to BEL or ST (or the end)
  | \x1b[\x20-\x2f]*[\x30-\x7e]?                               # other ESC sequences (and a lone ESC)
    """,
    re.VERBOSE,
)
# And the bidi embeddings, overrides and isolates: U+202E shows "exe.txt" for "txt.exe", and text after one is
# drawn reversed up to the line's end in a terminal that does bidi (the marks U+200E/U+200F stay: they only mark).
_CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"  # newline and tab kept
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
# A lone surrogate is a byte of a file name that is not UTF-8 (Python's surrogateescape): the terminal's stream
# writes it as "\udcff" (six cells where the layout counted one) or not at all; shown as U+FFFD, as "ls" shows a "?".
_SURROGATE = re.compile("[\ud800-\udfff]")
# The line and paragraph separators end a line for Python's splitlines (and some terminals) but are zero cells wide
# for the layout: a newline where text keeps its lines, out of a field's value as drawn.
_SEPARATORS = re.compile("[\u2028\u2029]")


def safe_text(text: str) -> str:
    """``text`` without terminal control sequences or control characters (newline and tab kept), a byte that was
    not UTF-8 shown as U+FFFD, the line and paragraph separators as newlines."""
    if text.isprintable():  # the common case: nothing to do
        return text
    return _SEPARATORS.sub("\n", _SURROGATE.sub("\ufffd", _CONTROL.sub("", _SEQUENCE.sub("", text))))


_ANY_CONTROL = re.compile(f"[\t\n\u2028\u2029{_CONTROL_CHARS}]")  # newline, tab and the separators too


def drawable(text: str) -> str:
    """``text`` as a field draws a value it keeps as typed (a path with odd characters still names its file): every
    control character out (newline and tab too; each is zero cells wide, so a cursor's column stays right), a lone
    surrogate as U+FFFD. What follows an ESC is then drawn as plain text, harmless."""
    if text.isprintable():
        return text
    return _SURROGATE.sub("\ufffd", _ANY_CONTROL.sub("", text))


def safe_line(text: str) -> str:
    """``safe_text`` on one line: newlines and tabs become spaces (table cells, titles, status lines)."""
    return safe_text(text).replace("\n", " ").replace("\t", " ")


def shown(text: str, limit: int = 0) -> str:
    """``text`` as a log line or an error message echoes it: each character ``str.isprintable`` refuses (control
    characters, bidirectional overrides like U+202E, line breaks) written as repr writes it (\\x1b, \\u202e, \\n)
    rather than removed, so what a client sent is seen as sent; cut at ``limit`` characters with "…" (0: whole)."""
    cut = text[:limit] + "…" if 0 < limit < len(text) else text
    if cut.isprintable():  # the common case: nothing to escape
        return cut
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)


def format_bytes(n: float) -> str:
    """A size as people read it: "812 MiB", "1.4 GiB" (binary units, as memory is counted)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
