"""A dialog that asks for one path, completed as typed: Enter takes it once it names what the dialog wants (a
folder, or a file), Esc cancels. Each dialog says its words and what it takes."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from tuillm.core.files import NO_SUCH_INPUT, input_problem
from tuillm.core.text import shown
from tuillm.tui.widgets.path_input import PathInput

NO_SUCH_FOLDER = "no such folder"
PATH_SHOWN = 120  # characters of a typed path a refusal repeats: a pasted 5,000 filled the screen with it


def named(path: Path) -> str:
    """``path`` as a refusal names it: cut, with what cannot be shown written as escapes."""
    return shown(str(path), PATH_SHOWN)


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be taken as a folder, in a few words (None: it can): the one rule of the dialogs that ask
    for a folder and of Settings' model folders. ``input_problem`` asks first: is_dir() raises for a name too long
    or a folder it may not look in (PermissionError), a traceback for a path typed in a dialog."""
    problem = input_problem(path)
    if problem is None and not path.is_dir():
        problem = "not a folder"
    elif problem == NO_SUCH_INPUT:
        problem = NO_SUCH_FOLDER
    return problem


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
        problem = self.EMPTY if path is None else self.path_problem(path)
        if problem is not None:
            self._refuse(problem)
        elif path is not None:
            self.dismiss(path.absolute())

    def path_problem(self, path: Path) -> str | None:
        """Why the dialog cannot take ``path``, naming it (None: it can)."""
        if self.WANTS_FOLDER:
            problem = folder_problem(path)
            return None if problem is None else f"{named(path)}: {problem}"
        if self.NEW_FILE:
            problem = input_problem(path)
            if problem is None and path.is_dir():
                return f"{named(path)}: a folder, not a file name"
            if problem not in (None, NO_SUCH_INPUT):  # a NUL, a name too long: the write would raise, not say why
                return f"{named(path)}: {problem}"
            problem = folder_problem(path.parent)
            return None if problem is None else f"{named(path.parent)}: {problem}"
        problem = input_problem(path)
        if problem == NO_SUCH_INPUT or (problem is None and not path.is_file()):
            problem = "no such file"
        return None if problem is None else f"{named(path)}: {problem}"

    def _refuse(self, text: str) -> None:
        self.notify(text, title=self.NOTIFY_TITLE, severity="error", markup=False)

    def action_cancel(self) -> None:
        self.dismiss(None)
