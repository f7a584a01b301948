"""The Convert pane's importance-matrix row: none, auto (computed on the built-in text and kept beside the
outputs), or a file; the file's path field shows only for "file". The values are convert_many's ``imatrix``."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Select

from tuillm.core.files import input_problem
from tuillm.core.paths import expand_user
from tuillm.core.text import safe_line
from tuillm.tui.widgets.path_input import PathInput

NONE, AUTO, FILE = "none", "auto", "file"
CHOICES = ((f"{NONE}: no importance matrix", NONE), (f"{AUTO}: compute one (llama-imatrix)", AUTO),
           (f"{FILE}: use a matrix file", FILE))


class ImatrixChoice(Horizontal):
    """``value``: None, "auto" or the file's path; ``problem``: why it cannot start (None when it can)."""

    DEFAULT_CSS = """
    ImatrixChoice { height: 1; }
    ImatrixChoice > Select { width: 38; }
    ImatrixChoice > PathInput { width: 1fr; }
    ImatrixChoice > PathInput.-hidden { display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Label("Matrix", classes="name")
        yield Select[str](CHOICES, value=NONE, allow_blank=False, id="imatrix-mode", compact=True)
        path = PathInput(placeholder="importance matrix file (.imatrix, .gguf, .dat)", id="imatrix-file",
                         classes="-hidden")
        path.compact = True  # one line, no border (PathInput does not take the ``compact`` argument)
        yield path

    @property
    def mode(self) -> str:
        value = self.query_one("#imatrix-mode", Select).value
        return value if isinstance(value, str) else NONE

    @property
    def value(self) -> str | None:
        if self.mode == FILE:
            return str(expand_user(self.query_one("#imatrix-file", PathInput).value.strip()))
        return AUTO if self.mode == AUTO else None

    @property
    def problem(self) -> str | None:
        """Checked as Start is pressed, before the job (and its log) begins: what the field names must be a file."""
        text = self.query_one("#imatrix-file", PathInput).value.strip()
        if self.mode != FILE:
            return None
        if not text:
            return "name the importance matrix file (or choose auto)"
        path = expand_user(text)
        reason = input_problem(path) or (None if path.is_file() else "a folder, not an importance matrix file")
        return safe_line(f"{path}: {reason}") if reason else None

    @on(Select.Changed, "#imatrix-mode")
    def _mode_changed(self) -> None:
        self.query_one("#imatrix-file", PathInput).set_class(self.mode != FILE, "-hidden")
