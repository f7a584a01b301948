"""What the app asks of every pane (typed: the app calls these through ``Pane``), and the panes in tab order.

A pane's module is imported when the pane is first mounted, not when the app starts: the first frame shows only
the Chat pane, and the other panes' modules (their forms, tables and the core code behind them) would otherwise be
paid for before it. Each ``PaneSpec`` names a loader function for its class instead of the class itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from textual.app import SystemCommand

from tuillm.tui import keymap

if TYPE_CHECKING:  # annotations only: importing them here would load every pane before the first frame
    from tuillm.tui.panes.chat import ChatPane
    from tuillm.tui.panes.convert import ConvertPane
    from tuillm.tui.panes.models import ModelsPane
    from tuillm.tui.panes.train import TrainPane

    PaneWidget = ChatPane | ModelsPane | ConvertPane | TrainPane


class Pane(Protocol):
    HELP_TITLE: ClassVar[str]  # how F1's "Where" column names the pane

    def focus_default(self) -> None:
        """Gives the focus to what the user works with first when the pane is shown."""

    def commands(self) -> Iterable[SystemCommand]:
        """The pane's entries in the command palette."""

    def work_in_progress(self) -> list[str]:
        """What quitting now would stop, each with what stopping loses ("training (a checkpoint is saved)")."""


def _chat() -> type[ChatPane]:
    from tuillm.tui.panes.chat import ChatPane

    return ChatPane


def _models() -> type[ModelsPane]:
    from tuillm.tui.panes.models import ModelsPane

    return ModelsPane


def _convert() -> type[ConvertPane]:
    from tuillm.tui.panes.convert import ConvertPane

    return ConvertPane


def _train() -> type[TrainPane]:
    from tuillm.tui.panes.train import TrainPane

    return TrainPane


@dataclass(frozen=True)
class PaneSpec:
    id: str
    load: Callable[[], type[PaneWidget]]  # the pane's class, its module imported on the first call

    @property
    def title(self) -> str:
        return keymap.PANE_KEYS[self.id][1]

    @property
    def keys(self) -> str:  # e.g. "f3,alt+m" (keymap.PANE_KEYS): the first is the one the tab shows
        return keymap.PANE_KEYS[self.id][0]


# The panes in tab order (keys and titles: keymap.PANE_KEYS). Chat first: the app opens ready to chat, as oterm does.
PANES: tuple[PaneSpec, ...] = (
    PaneSpec("chat", _chat),
    PaneSpec("models", _models),
    PaneSpec("convert", _convert),
    PaneSpec("train", _train),
)
