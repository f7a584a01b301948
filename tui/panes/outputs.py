"""Where the panes write new model files by default: the first models folder, the one the Models pane scans
first, so a converted, merged or exported file is listed there at once (the app tells Models of each new file)."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from tuillm.core.paths import expand_user
from tuillm.tui.session import Session


def models_folder(session: Session) -> Path | None:
    """The first models folder (the session's override, else the config's); None when none is set (each pane
    says where its files go then)."""
    dirs = session.model_dirs if session.model_dirs is not None else session.config.model_dirs
    return expand_user(dirs[0]) if dirs else None


class OutputsWritten(Message):
    """Model files that are complete (Convert's outputs, Train's merged model or exported adapter): the app lists
    them in the Models pane at once."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths
