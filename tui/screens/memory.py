"""The memory guard's offer during chat: available RAM fell under the floor, so shed load on our own terms before
the OOM killer ends the app: u unloads the model, r reloads it with a smaller context (half: a KV cache half the
size), k or Esc keeps it as it is."""

from __future__ import annotations

from typing import Literal

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.core.text import safe_line
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS

Answer = Literal["unload", "reload", "keep"]


class MemoryScreen(ModalScreen[Answer]):
    DEFAULT_CSS = DIALOG_CSS + """
    MemoryScreen { align: center middle; }
    MemoryScreen .dialog { border: round $error; }
    """
    BINDINGS = keymap.MEMORY

    def __init__(self, situation: str, model: str, n_ctx: int, smaller: int | None) -> None:
        """``situation``: the guard's figures (one line); ``smaller``: the context a reload offers (None: unloading
        is the only way to free memory)."""
        super().__init__()
        self.situation = situation
        self.model = safe_line(model)  # a file's name
        self.n_ctx = n_ctx
        self.smaller = smaller

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Memory is running out", classes="dialog-title")
            yield Label(f"{self.situation}. Free some before the system stops a program (this one, perhaps).",
                        markup=False)
            yield Label(f"u: unload {self.model}", markup=False)
            if self.smaller is not None:
                yield Label(f"r: reload it with a context of {self.smaller} tokens (now {self.n_ctx})", markup=False)
            yield Label("k or Esc: keep it as it is", markup=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "answer" and parameters == ("reload",) and self.smaller is None:
            return False
        return True

    def action_answer(self, answer: Answer) -> None:
        self.dismiss(answer)
