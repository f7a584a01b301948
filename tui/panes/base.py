"""What the app asks of every pane (typed: the app calls these on the pane classes it imports), and the panes in
tab order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from textual.app import SystemCommand

from tuillm.tui import keymap
from tuillm.tui.panes.chat import ChatPane
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.panes.models import ModelsPane
from tuillm.tui.panes.train import TrainPane


class Pane(Protocol):
    HELP_TITLE: ClassVar[str]  # how F1's "Where" column names the pane

    def focus_default(self) -> None:
        """Gives the focus to what the user works with first when the pane is shown."""

    def commands(self) -> Iterable[SystemCommand]:
        """The pane's entries in the command palette."""


PaneClass = type[ChatPane] | type[ModelsPane] | type[ConvertPane] | type[TrainPane]


@dataclass(frozen=True)
class PaneSpec:
    id: str
    cls: PaneClass

    @property
    def title(self) -> str:
        return keymap.PANE_KEYS[self.id][1]

    @property
    def keys(self) -> str:  # e.g. "f3,alt+m" (keymap.PANE_KEYS): the first is the one the tab shows
        return keymap.PANE_KEYS[self.id][0]


# The panes in tab order (keys and titles: keymap.PANE_KEYS). Chat first: the app opens ready to chat, as oterm does.
PANES: tuple[PaneSpec, ...] = (
    PaneSpec("chat", ChatPane),
    PaneSpec("models", ModelsPane),
    PaneSpec("convert", ConvertPane),
    PaneSpec("train", TrainPane),
)
