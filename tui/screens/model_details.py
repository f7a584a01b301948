"""A model's details: every metadata key, the estimate, a preview of its chat template."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.core.text import safe_line
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.model_details import ModelDetails


class ModelDetailsScreen(ModalScreen[None]):
    HELP_TITLE = "Model details"
    DEFAULT_CSS = DIALOG_CSS + """
    ModelDetailsScreen { align: center middle; }
    ModelDetailsScreen .models-dialog { height: 95%; max-width: 100; }
    """
    BINDINGS = keymap.MODEL_DETAILS

    def __init__(self, title: str, details: ModelDetails) -> None:
        super().__init__()
        self.title_text = safe_line(title)  # a model's name: from a file
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label(f"{self.title_text}  (↑↓ PgUp PgDn scroll, Esc closes)", classes="dialog-title",
                        markup=False)
            yield self.details

    def on_mount(self) -> None:
        self.details.focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
