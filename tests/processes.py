"""Finding processes by their command line, as the signal and tmux tests do."""

from __future__ import annotations

import psutil


def command_line(process: psutil.Process) -> str:
    """``process``'s command line, or "" once it has ended: a short-lived child (a tokenizer, a step's own child)
    can exit, or be a zombie not yet reaped, between listing the children and reading their command lines."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess is a NoSuchProcess
        return ""


def children_running(parent: psutil.Process, words: str, *, recursive: bool = True) -> list[psutil.Process]:
    """``parent``'s children whose command line holds ``words``."""
    try:
        children = parent.children(recursive=recursive)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if words in command_line(child)]
