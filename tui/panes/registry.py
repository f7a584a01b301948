"""The panes of the app, in tab order: adding a pane is a module in this folder plus one line in ``PANES``.

Each pane is a widget class constructed with ``(session, id=...)``; it is imported by name when the app
composes, so this list costs nothing to import. A pane may also define:
- ``BINDINGS`` (active while the focus is inside it; F1 and the footer list them),
- ``HELP_TITLE``, how F1's "Where" column names it,
- ``focus_default()``, what gets the focus when the pane is shown,
- ``commands() -> Iterable[SystemCommand]``, its entries in the command palette.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from textual.widget import Widget

from tuillm.tui.session import Session


@dataclass(frozen=True)
class PaneSpec:
    id: str
    title: str
    keys: str  # Textual key list, e.g. "f3,alt+m": the first is the one the footer shows
    target: str  # "module:Class"

    def create(self, session: Session) -> Widget:
        module_name, _, class_name = self.target.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(session, id=f"pane-{self.id}")


# F-keys are what the footer shows; alt+<initial> is the same switch for terminals (or tmux set-ups) that do
# not pass F-keys through. (Not alt+digit: Textual reads ESC+digit as macOS Option characters, e.g. "™".)
# Chat comes first: the app opens ready to chat, as oterm does.
PANES: tuple[PaneSpec, ...] = (
    PaneSpec("chat", "Chat", "f2,alt+c", "tuillm.tui.panes.chat:ChatPane"),
    PaneSpec("models", "Models", "f3,alt+m", "tuillm.tui.panes.models:ModelsPane"),
    PaneSpec("convert", "Convert", "f4,alt+o", "tuillm.tui.panes.convert:ConvertPane"),
    PaneSpec("train", "Train", "f5,alt+t", "tuillm.tui.panes.train:TrainPane"),
)
