"""Add a models folder (saved in the config)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.path_input import PathInput


class AddFolderScreen(ModalScreen[Path | None]):
    HELP_TITLE = "Add a models folder"
    DEFAULT_CSS = DIALOG_CSS + """
    AddFolderScreen { align: center middle; }
    """
    BINDINGS = keymap.ADD_FOLDER

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label("Add a models folder  (Enter adds, Esc cancels)", classes="dialog-title")
            yield Label("→ or End takes the completion", classes="dialog-hint")
            # Folders only: the completion offers no files.
            yield PathInput(placeholder="~/models", accept=lambda _path: False, id="add-folder-input")

    def on_mount(self) -> None:
        self.query_one(PathInput).focus()

    def on_input_submitted(self) -> None:
        path = self.query_one(PathInput).path
        if path is None:
            self.notify("type a folder path", title="Add folder", severity="error", markup=False)
        elif not path.is_dir():
            self.notify(f"{path}: not a folder", title="Add folder", severity="error", markup=False)
        else:
            self.dismiss(path.absolute())

    def action_cancel(self) -> None:
        self.dismiss(None)
