"""Errors the front ends show as one line (CLI: stderr + exit 1; TUI: a notification)."""

from __future__ import annotations

from pathlib import Path


class TuillmError(Exception):
    """An expected failure with a message fit for the user: no traceback is shown for it."""


class ModelFileError(TuillmError):
    """A model path that cannot be read: missing, truncated, not a model, unsupported version."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
