"""Export a chat: the path of the file to write (JSON keeps everything and imports back; any other name is
Markdown), completed as typed. The file need not exist; its folder must."""

from __future__ import annotations

from pathlib import Path

from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.screens.path_dialog import PathDialog


class ExportChatScreen(PathDialog):
    HELP_TITLE = "Export a chat"
    DEFAULT_CSS = DIALOG_CSS + """
    ExportChatScreen { align: center middle; }
    """
    BINDINGS = keymap.EXPORT_CHAT
    HEADING = "Export this chat  (Enter writes, Esc cancels)"
    HINT = "NAME.json imports back (Import chat…); any other name is Markdown · → completes"
    PLACEHOLDER = "~/chat.md"
    INPUT_ID = "export-chat-input"
    NOTIFY_TITLE = "Export"
    EMPTY = "type the path of the file to write"
    WANTS_FOLDER = False
    NEW_FILE = True

    def accept(self, path: Path) -> bool:
        return path.suffix.lower() in (".json", ".md")
