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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when empty): a library's error, in one line."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def error_text(exc: BaseException) -> str:
    """What a front end shows for a failed job: a TuillmError's one-line message; anything else is a bug, shown by
    its type's name (not fatal)."""
    return str(exc) if isinstance(exc, TuillmError) else f"{exc.__class__.__name__}: {exc}"
