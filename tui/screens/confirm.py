"""A yes/no question: y answers yes; n or Esc no.

A question about work that may end while it is read (Esc's "Stop the conversion?") says so with ``stands``: once
that says no, the app withdraws it (``app_quit``), whether it is on top or under another dialog (Ctrl+Q's question
asked over it). Ctrl+Q's own question is reworded instead (``reword``): it never offers to stop a job that has ended.
"""

from __future__ import annotations

from collections.abc import Callable

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

    def __init__(self, question: str, *, stands: Callable[[], bool] | None = None) -> None:
        """``stands``: whether the question still means something (the job it would stop still runs); None: always."""
        super().__init__()
        self.question = question
        self._stands = stands

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small-dialog"):
            # The question often names a file (from the disk, or pasted): no control sequence reaches the terminal.
            yield Label(safe_text(self.question), classes="dialog-title", markup=False)
            yield Label("y: yes · n or Esc: no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def stands(self) -> bool:
        return self._stands is None or self._stands()

    def reword(self, question: str) -> None:
        """Asks ``question`` instead (what the answer does has changed meanwhile)."""
        if question != self.question:
            self.question = question
            if self.is_mounted:
                self.query_one(".dialog-title", Label).update(safe_text(question))

    def withdraw(self) -> None:
        """Closes the question unanswered (its callback hears None), on top of the stack or under another dialog."""
        app = self.app
        stack = app._screen_stack  # noqa: SLF001 - Textual pops only the top screen; this one may be under another
        if self not in stack:
            return  # answered already
        if stack[-1] is self:
            self.dismiss(None)
            return
        # What pop_screen does for the top screen: out of the stack, its callback told, then removed from the DOM.
        stack.remove(self)
        if self._result_callbacks:
            self._result_callbacks[-1](None)
            self._pop_result_callback()
        self.remove()
        app.screen.refresh()  # the dialog on top no longer shows this one through its backdrop
