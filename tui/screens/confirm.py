"""A yes/no question: y answers yes; n or Esc no."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: list[BindingType] = [
        Binding("y", "answer(True)", "Yes", id="dialog.confirm_yes", tooltip="Yes, do it"),
        Binding("n,escape", "answer(False)", "No", id="dialog.confirm_no", tooltip="No, leave it"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small-dialog"):
            yield Label(self.question, classes="dialog-title", markup=False)
            yield Label("y: yes · n or Esc: no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
