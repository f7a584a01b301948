"""Errors the front ends show as one line (CLI: stderr + exit 1; TUI: a notification), and the crash log behind the
last-resort guard of each front end.

An error's text often carries a file name or a value read from a file (a GGUF's metadata, a config's keys): it goes
through ``safe_text`` here, once, so no front end prints a control sequence from a hostile file.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from tuillm.core.paths import state_dir
from tuillm.core.text import safe_line, safe_text

CRASH_LOG_MAX_BYTES = 1 << 20  # past this the log starts again: it holds the latest crashes, not a history


class TuillmError(Exception):
    """An expected failure with a message fit for the user: no traceback is shown for it."""


class ModelFileError(TuillmError):
    """A model path that cannot be read: missing, truncated, not a model, unsupported version."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, terminal-safe (its type's name when empty): a library's error, in
    one line."""
    return (safe_text(str(exc)).strip().splitlines() or [type(exc).__name__])[0].strip()


def error_text(exc: BaseException) -> str:
    """What a front end shows for a failure, terminal-safe: a TuillmError's message (``tuillm: <this>`` on the
    CLI); anything else is a bug, shown by its type's name and first line (not fatal)."""
    name = type(exc).__name__
    if isinstance(exc, TuillmError):
        return safe_text(str(exc)).strip() or name
    line = first_line(exc)
    return name if line == name else f"{name}: {line}"


def crash_log_path() -> Path:
    """The crash log under the XDG state folder ($XDG_STATE_HOME/tuillm/crash.log)."""
    return state_dir() / "crash.log"


def write_crash_log(exc: BaseException) -> Path | None:
    """Appends ``exc``'s traceback to the crash log; the log's path, or None when it cannot be written."""
    path = crash_log_path()
    text = safe_text("".join(traceback.format_exception(exc)))  # `cat crash.log` must not replay an escape
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = "w" if path.is_file() and path.stat().st_size > CRASH_LOG_MAX_BYTES else "a"
        with path.open(mode, encoding="utf-8", errors="backslashreplace") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} tuillm crash\n{text}\n")
    except OSError:
        return None
    return path


def crash_report(exc: BaseException) -> str:
    """The one line a last-resort guard shows for an unexpected exception, after writing its traceback to the crash
    log: ``unexpected error: <type: first line>; details in <crash log>``."""
    path = write_crash_log(exc)
    where = f"details in {path}" if path else f"no crash log ({crash_log_path()} cannot be written)"
    return f"unexpected error: {error_text(exc)}; {safe_line(where)}"
