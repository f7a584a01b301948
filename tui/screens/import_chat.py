"""Import a chat: the path of a JSON file (a tuillm export, or an OpenAI messages list), completed as typed."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.path_input import PathInput


def _json_file(path: Path) -> bool:
    return path.suffix.lower() == ".json"


class ImportChatScreen(ModalScreen[Path | None]):
    HELP_TITLE = "Import a chat"
    AUTO_FOCUS = "#import-chat-input"
    DEFAULT_CSS = DIALOG_CSS + """
    ImportChatScreen { align: center middle; }
    """
    BINDINGS = keymap.IMPORT_CHAT

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label("Import a chat from JSON  (Enter imports, Esc cancels)", classes="dialog-title")
            yield Label("A tuillm export or an OpenAI messages list · → completes", classes="dialog-hint")
            yield PathInput(placeholder="~/chat.json", accept=_json_file, id="import-chat-input")

    def on_input_submitted(self) -> None:
        path = self.query_one(PathInput).path
        if path is None:
            self.notify("type the path of a JSON file", title="Import", severity="error", markup=False)
        elif not path.is_file():
            self.notify(f"{path}: no such file", title="Import", severity="error", markup=False)
        else:
            self.dismiss(path.absolute())

    def action_cancel(self) -> None:
        self.dismiss(None)
