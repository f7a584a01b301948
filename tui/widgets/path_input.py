"""An ``Input`` for file and folder paths that completes as you type, as a shell does.

The completion is shown as a dim suggestion; Right (at the end of the text) or End takes it, as in any Textual
``Input``, and Tab is left alone so it still moves the focus. A folder completes with its trailing "/", so the next
keystrokes complete inside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from textual.suggester import Suggester

from tuillm.core.paths import expand_user
from tuillm.tui.widgets.safe_input import SafeInput

MAX_ENTRIES = 2000  # a huge folder is not listed in full on each keystroke


def complete_path(value: str, accept: Callable[[Path], bool] | None = None) -> str | None:
    """The first entry that completes ``value`` (hidden ones only when asked for with a leading "."), or None."""
    if not value:
        return None
    expanded = os.path.expanduser(value)
    folder, _, prefix = expanded.rpartition(os.sep)
    base = Path(folder or (os.sep if expanded.startswith(os.sep) else "."))
    try:
        names = []
        with os.scandir(base) as entries:
            for i, entry in enumerate(entries):
                if i >= MAX_ENTRIES:
                    break
                if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
                    continue
                if entry.name.isprintable():  # escape sequences in a name: shown as a suggestion, they would play
                    names.append((entry.name, entry.is_dir()))
    except OSError:
        return None
    for name, is_dir in sorted(names):
        if name == prefix and not is_dir:
            continue
        if not is_dir and accept is not None and not accept(base / name):
            continue
        # Keep what the user typed ("~/" stays "~/"); add only the rest of the name.
        return value + name[len(prefix):] + ("/" if is_dir else "")
    return None


class PathSuggester(Suggester):
    def __init__(self, accept: Callable[[Path], bool] | None = None) -> None:
        # No cache: the folder may change while the app runs (a conversion writes a new file).
        super().__init__(use_cache=False, case_sensitive=True)
        self._accept = accept

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value, self._accept)


class PathInput(SafeInput):
    """``accept`` filters the files offered (folders are always offered, to walk into)."""

    def __init__(self, value: str = "", *, placeholder: str = "", accept: Callable[[Path], bool] | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(value, placeholder=placeholder, suggester=PathSuggester(accept), id=id, classes=classes)

    @property
    def path(self) -> Path | None:
        text = self.value.strip()
        return expand_user(text) if text else None
