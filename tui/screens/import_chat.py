"""Import a chat: the path of a JSON file (a tuillm export, or an OpenAI messages list), completed as typed."""

from __future__ import annotations

from pathlib import Path

from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.screens.path_dialog import PathDialog


class ImportChatScreen(PathDialog):
    HELP_TITLE = "Import a chat"
    DEFAULT_CSS = DIALOG_CSS + """
    ImportChatScreen { align: center middle; }
    """
    BINDINGS = keymap.IMPORT_CHAT
    HEADING = "Import a chat from JSON  (Enter imports, Esc cancels)"
    HINT = "A tuillm export or an OpenAI messages list · → completes"
    PLACEHOLDER = "~/chat.json"
    INPUT_ID = "import-chat-input"
    NOTIFY_TITLE = "Import"
    EMPTY = "type the path of a JSON file"
    WANTS_FOLDER = False

    def accept(self, path: Path) -> bool:
        return path.suffix.lower() == ".json"
