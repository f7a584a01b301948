"""The tab that holds one of the app's panes."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.message import Message
from textual.widget import Widget
from textual.widgets import TabPane


class PaneTab(TabPane):
    """A ``TabPane`` shown only by the app (its keys, a click on its tab), never by the focus landing in it.

    Textual's shows the pane of any widget that takes the focus. But a focused widget hidden with its pane passes
    the focus to a sibling (Textual's blur on Hide), hidden too, and the pane just left came back: a click on a tab
    always, F3 on a busy machine, bounced back to the Chat pane."""

    @dataclass
    class FocusedHidden(Message):
        """The focus landed in this pane while it is hidden: the app gives it to the pane shown."""

        widget: Widget

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if not self.display:  # not the pane shown
            event.prevent_default()  # TabPane's own handler (next in the MRO) would show this pane
            self.post_message(self.FocusedHidden(event.widget))
