"""What the chat backend's thread sends the Chat pane: its events, a reply's outcome, and the streaming reply's
text on its way to the bubble it is drawn in.

The backend calls ``add`` on its own thread for every token; the text waits in a buffer and one ``TextWaiting``
message asks the event loop to draw it. Drawing per token kept the event loop busy and its GIL use slowed the
decoding thread, so text is drawn at most every ``DRAW_INTERVAL_S``: the first token at once, then what came in
the meantime in one go (``MessageBubble.stream``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget

from tuillm.core.chat.events import ChatEvent, ReplyDone, Token
from tuillm.core.errors import error_text
from tuillm.core.text import safe_text
from tuillm.tui.widgets.chat_messages import MessageBubble

DRAW_INTERVAL_S = 0.1


class BackendEvent(Message):
    """An event of the chat backend (other than a token), posted from its thread."""

    def __init__(self, event: ChatEvent) -> None:
        super().__init__()
        self.event = event


class TurnDone(Message):
    def __init__(self, done: ReplyDone) -> None:
        super().__init__()
        self.done = done


class TurnFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error  # one line, ready to show


def turn_outcome(future: Future[ReplyDone]) -> TurnDone | TurnFailed:
    """The message for a finished reply's future."""
    exc = future.exception()
    return TurnFailed(error_text(exc)) if exc is not None else TurnDone(future.result())


class TextWaiting(Message):
    """Streamed text is waiting in the buffer (posted once per batch, from the backend's thread)."""


class ReplyStream:
    """Buffers the streaming reply's tokens for ``owner`` (which handles ``TextWaiting`` by calling ``draw``)."""

    def __init__(self, owner: Widget, after_draw: Callable[[], None]) -> None:
        self._owner = owner
        self._after_draw = after_draw  # called after each draw, in its frame
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._draw_pending = False  # a TextWaiting is posted or a draw is scheduled
        self.tokens = 0  # of the streaming reply, counted on the backend's thread
        self.first_token_at = 0.0
        self.bubble: MessageBubble | None = None  # where the text is drawn (set once the reply's bubble exists)
        self._skipped = False  # a draw came before the bubble: the text waits in the buffer for draw_into
        self._next: Timer | None = None  # the next draw, while text keeps coming

    def begin(self) -> None:
        self.tokens = 0

    def add(self, token: Token) -> None:
        """Called on the backend's thread: post_message is thread-safe and does not wait for the event loop."""
        self.tokens += 1
        if self.tokens == 1:
            self.first_token_at = time.perf_counter()
        text = safe_text(token.text)  # the model's text: no terminal control sequences reach the screen
        if not text:
            return
        with self._lock:
            self._buffer.append(text)
            post, self._draw_pending = not self._draw_pending, True
        if post:
            self._owner.post_message(TextWaiting())

    def take_text(self) -> str:
        """The text streamed since the last draw; when there is none, the next token asks for a draw at once."""
        with self._lock:
            text = "".join(self._buffer)
            self._buffer.clear()
            if not text:
                self._draw_pending = False
        return text

    async def draw_into(self, bubble: MessageBubble | None) -> None:
        """Draw the reply in ``bubble`` (once mounted), with what came before it."""
        self.bubble = bubble
        if self._skipped and bubble is not None:
            self._skipped = False
            await self.draw()

    async def draw(self) -> None:
        if self.bubble is None:
            self._skipped = True  # the first tokens came before the bubble: draw_into draws them
            return
        text = self.take_text()
        if text:
            await self.bubble.stream(text)
            self._after_draw()
            self._next = self._owner.set_timer(DRAW_INTERVAL_S, self.draw)

    def end(self) -> None:
        """The reply ended: drop what is buffered (the final full update draws it)."""
        self.take_text()
        with self._lock:
            self._draw_pending = False
        self.bubble = None
        self._skipped = False
        if self._next is not None:
            # A draw left to run would start a second round of draws in the next reply (each round drawing every
            # DRAW_INTERVAL_S: twice the work), or count as the next reply's draw that came before its bubble.
            self._next.stop()
            self._next = None

    def rate(self) -> float | None:
        """Tokens per second after the first, while the reply streams (None before the second token)."""
        if self.tokens < 2:
            return None
        return (self.tokens - 1) / max(time.perf_counter() - self.first_token_at, 1e-6)
