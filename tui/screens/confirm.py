"""A yes/no question: y answers yes; n or Esc no."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.core.text import safe_text
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = keymap.CONFIRM

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small-dialog"):
            # The question often names a file (from the disk, or pasted): no control sequence reaches the terminal.
            yield Label(safe_text(self.question), classes="dialog-title", markup=False)
            yield Label("y: yes · n or Esc: no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
