"""The one exception the converter raises for bad input; its message is a single line fit for the user."""

from __future__ import annotations

from pathlib import Path


class ConvertError(Exception):
    """A checkpoint or output that cannot be converted (unsupported architecture, missing file, bad shard...)."""


class JSONFileError(ConvertError):
    """A JSON file of a checkpoint or adapter that cannot be used: the path, and the problem on its own."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
