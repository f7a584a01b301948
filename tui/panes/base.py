"""What the app asks of every pane (typed: the app calls these on the pane classes it imports)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Protocol

from textual.app import SystemCommand


class Pane(Protocol):
    HELP_TITLE: ClassVar[str]  # how F1's "Where" column names the pane

    def focus_default(self) -> None:
        """Gives the focus to what the user works with first when the pane is shown."""

    def commands(self) -> Iterable[SystemCommand]:
        """The pane's entries in the command palette."""
