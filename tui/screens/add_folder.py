"""Add a models folder (saved in the config)."""

from __future__ import annotations

from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.screens.path_dialog import PathDialog


class AddFolderScreen(PathDialog):
    HELP_TITLE = "Add a models folder"
    DEFAULT_CSS = DIALOG_CSS + """
    AddFolderScreen { align: center middle; }
    """
    BINDINGS = keymap.ADD_FOLDER
    HEADING = "Add a models folder  (Enter adds, Esc cancels)"
    HINT = "→ or End takes the completion"
    PLACEHOLDER = "~/models"
    INPUT_ID = "add-folder-input"
    NOTIFY_TITLE = "Add folder"
    EMPTY = "type a folder path"
    WANTS_FOLDER = True  # the completion offers no files (accept: none)
