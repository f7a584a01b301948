"""Writing a streaming assistant reply as it grows: a killed app loses at most the last half second of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tuillm.core.chat.branches import AT_LEAF, Parent
from tuillm.core.chat.events import ChatEvent, Token
from tuillm.core.chat.store import ChatStore

SAVE_INTERVAL_S = 0.5


class StreamingSaver:
    """Keeps an assistant message row in step with a streaming reply: ``add(text)`` per token writes at most every
    ``interval`` seconds; ``finish`` writes the final text and stats."""

    def __init__(self, store: ChatStore, chat_id: int, *, interval: float = SAVE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, model: str = "", adapter: str = "",
                 parent: Parent = AT_LEAF) -> None:
        self.store = store
        self.interval = interval
        self._clock = clock
        self._parts: list[str] = []
        self._last_save = clock()
        self.writes = 0
        self.message = store.add_message(chat_id, "assistant", "", complete=False, model=model,
                                          adapter=adapter, parent=parent)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def add(self, piece: str) -> None:
        self._parts.append(piece)
        now = self._clock()
        if now - self._last_save >= self.interval:
            self.store.update_message(self.message.id, self.text)
            self._last_save = now
            self.writes += 1

    def on_event(self, event: ChatEvent) -> None:
        """Use as a chat reply's listener: saves streamed tokens as they come."""
        if isinstance(event, Token):
            self.add(event.text)

    def finish(self, text: str | None = None, stats: Mapping[str, Any] | None = None,
               complete: bool = True) -> None:
        final = self.text if text is None else text
        self.store.update_message(self.message.id, final, stats=stats, complete=complete)
        self.writes += 1
