"""The completion list of an ``@path`` in the chat prompt: files and folders matching what is typed after the ``@``.

Listing is bounded and off the event loop: the prompt lists on a worker thread, at most ``MAX_SCAN`` entries of a
folder are read per keystroke (``os.scandir`` yields lazily, and only the names that match are looked at further)
and at most ``MAX_SHOWN`` are offered; a list cut short says so, and typing more of the name narrows it. Paths are
relative to the working directory, or under ``~`` or ``/`` when typed so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tuillm.core.text import safe_line

MAX_SCAN = 50_000  # entries read from one folder per keystroke (tens of milliseconds, on a worker thread)
MAX_SHOWN = 50  # entries offered


@dataclass(frozen=True)
class Candidate:
    value: str  # the path as it goes after the "@": what was typed of the folder, then the entry's name
    is_dir: bool


def candidates(typed: str, cwd: Path | None = None) -> tuple[list[Candidate], bool]:
    """The entries that complete ``typed`` (hidden ones only when the name typed starts with "."), folders with a
    trailing "/", sorted by name; and whether the folder held more than was read or offered."""
    if typed == "~":
        return [Candidate("~/", True)], False
    folder, _, prefix = typed.rpartition("/")
    if typed.startswith("/") and not folder:
        folder = "/"
    base = Path(os.path.expanduser(folder)) if folder else Path()
    if not base.is_absolute():
        base = (cwd or Path.cwd()) / base
    head = typed[: len(typed) - len(prefix)]
    wanted = prefix.casefold()
    found: list[Candidate] = []
    cut = False
    try:
        with os.scandir(base) as entries:
            for i, entry in enumerate(entries):
                if i >= MAX_SCAN:
                    cut = True
                    break
                if not entry.name.casefold().startswith(wanted) or (entry.name.startswith(".")
                                                                    and not prefix.startswith(".")):
                    continue
                if not entry.name.isprintable():  # escape sequences in a name: it could not go into the prompt
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:  # gone since it was listed, or a link loop
                    is_dir = False
                found.append(Candidate(head + entry.name + ("/" if is_dir else ""), is_dir))
    except (OSError, ValueError):  # not a folder, no permission, a NUL in the name
        return [], False
    found.sort(key=lambda c: c.value.casefold())
    return found[:MAX_SHOWN], cut or len(found) > MAX_SHOWN


class PathCompletions(OptionList):
    """The list shown above the prompt. It never takes the focus: the prompt keeps it, and moves the highlight."""

    DEFAULT_CSS = """
    PathCompletions {
        height: auto;
        max-height: 8;
        border: round $accent;
        background: $surface;
        padding: 0;
    }
    """
    can_focus = False

    def __init__(self) -> None:
        super().__init__(id="path-completions")
        self.values: list[Candidate] = []

    def show(self, found: list[Candidate], cut: bool) -> None:
        self.values = found
        self.clear_options()
        # A file name can carry escape sequences or markup: shown as plain, safe text.
        self.add_options([Option(Text(safe_line(c.value))) for c in found])
        if cut:
            self.add_option(Option(Text("… more: type to narrow", style="dim"), disabled=True))
        self.border_title = "Tab or Enter attaches · Esc closes"
        if found:
            self.highlighted = 0

    def move(self, step: int) -> None:
        if self.values:
            self.highlighted = ((self.highlighted or 0) + step) % len(self.values)

    @property
    def chosen(self) -> Candidate | None:
        index = self.highlighted
        return self.values[index] if index is not None and index < len(self.values) else None
