"""Rename a chat."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tuillm.core.chat.store import MAX_TITLE_CHARS
from tuillm.core.text import safe_line
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.safe_input import SafeInput


class RenameScreen(ModalScreen[str | None]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = keymap.RENAME

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small-dialog"):
            yield Label("Rename the chat  (Enter saves, Esc cancels)", classes="dialog-title")
            # A title from the database may hold a message's escape sequences: the field would draw them as they are.
            yield SafeInput(safe_line(self.title_text), max_length=MAX_TITLE_CHARS, id="rename-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())
        else:
            self.notify("a chat title cannot be empty", severity="error", markup=False)

    def action_cancel(self) -> None:
        self.dismiss(None)
