"""A dialog that asks for one path, completed as typed: Enter takes it once it names what the dialog wants (a
folder, or a file), Esc cancels. Each dialog says its words and what it takes."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.tui.widgets.path_input import PathInput


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be taken as a folder (None: it can): the one rule of the dialogs that ask for a folder
    and of Settings' model folders."""
    if path.is_dir():
        return None
    return f"{path}: {'not a folder' if path.exists() else 'no such folder'}"


class PathDialog(ModalScreen[Path | None]):
    AUTO_FOCUS = "PathInput"
    HEADING: ClassVar[str]  # the dialog's first line
    HINT: ClassVar[str]
    PLACEHOLDER: ClassVar[str]
    INPUT_ID: ClassVar[str]
    NOTIFY_TITLE: ClassVar[str]
    EMPTY: ClassVar[str]  # what to say when Enter finds no path
    WANTS_FOLDER: ClassVar[bool]  # a folder (else a file)
    NEW_FILE: ClassVar[bool] = False  # a file to write: it need not exist, its folder must

    def accept(self, path: Path) -> bool:
        """Whether the completion offers this file (folders are always offered, to walk into)."""
        return False

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label(self.HEADING, classes="dialog-title")
            yield Label(self.HINT, classes="dialog-hint")
            yield PathInput(placeholder=self.PLACEHOLDER, accept=self.accept, id=self.INPUT_ID)

    def on_input_submitted(self) -> None:
        path = self.query_one(PathInput).path
        if path is None:
            self._refuse(self.EMPTY)
        elif self.WANTS_FOLDER and (problem := folder_problem(path)):
            self._refuse(problem)
        elif self.NEW_FILE and (path.is_dir() or not path.parent.is_dir()):
            self._refuse(f"{path}: a folder, not a file name" if path.is_dir() else f"{path.parent}: no such folder")
        elif not self.WANTS_FOLDER and not self.NEW_FILE and not path.is_file():
            self._refuse(f"{path}: no such file")
        else:
            self.dismiss(path.absolute())

    def _refuse(self, text: str) -> None:
        self.notify(text, title=self.NOTIFY_TITLE, severity="error", markup=False)

    def action_cancel(self) -> None:
        self.dismiss(None)
