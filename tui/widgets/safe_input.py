"""An Input that holds no control character or escape sequence.

Textual's Input draws its value as it is (only BEL is dropped): an OSC in a pasted text, a completed file name or a
value read from a file or the chat database would retitle the terminal or write its clipboard, a CSI would move the
cursor. Every value the field takes, typed, pasted, completed or set, passes through ``validate_value``.
"""

from __future__ import annotations

from textual.widgets import Input

from tuillm.core.text import safe_line


class SafeInput(Input):
    """An Input whose value never holds a control character or an escape sequence."""

    def validate_value(self, value: str) -> str:
        return safe_line(value)
