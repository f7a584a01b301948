"""A TextArea that holds no control character or escape sequence.

Textual's TextArea draws its text as it is: an OSC in a pasted text would retitle the terminal (or write its
clipboard), a CSI would move the cursor. Every change of the text passes through ``edit`` (keys, paste, undo,
completion), and the text it starts with or is loaded with is cleaned the same way; newlines and tabs are kept.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import TextArea
from textual.widgets.text_area import Edit, EditResult

from tuillm.core.text import safe_text


class SafeTextArea(TextArea):
    """A TextArea whose text never holds a control character or an escape sequence."""

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(safe_text(text), **kwargs)

    def edit(self, edit: Edit) -> EditResult:
        edit.text = safe_text(edit.text)
        return super().edit(edit)

    def load_text(self, text: str) -> None:
        super().load_text(safe_text(text))
