"""The one-line filter of a list (Models, the chat list), opened with "/"."""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class FilterInput(Input):
    """An ``Input`` where "/" typed into it while empty is not text: it is the key that opens the filter. (Under
    load, one end-to-end run showed the "/" that opened the Models filter typed into it as well, so that nothing
    matched; how the key reached the filter was not found. A filter by path matches without its leading "/".)"""

    def _on_key(self, event: events.Key) -> None:
        if event.character == "/" and not self.value:
            event.stop()
            event.prevent_default()  # Input's own handler (next in the MRO) would insert it
