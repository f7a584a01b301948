"""What the chat backend's thread sends the Chat pane: its events, a reply's outcome, and the streaming reply's
text on its way to the bubble it is drawn in.

The backend calls ``add`` on its own thread for every token; the text waits in a buffer and one ``TextWaiting``
message asks the event loop to draw it. Drawing per token kept the event loop busy and its GIL use slowed the
decoding thread, so text is drawn at most every ``DRAW_INTERVAL_S``: the first token at once, then what came in
the meantime in one go (``MessageBubble.stream``).

A draw costs more than its own call: the frame Textual renders after it (every widget around the reply is rendered
again, ~3 ms on these machines at 80x24), and now and then a layout. Where llama.cpp's threads use every core, that
CPU is taken from the decoding: at 10 draws a second the event loop took ~12% of a core here, and the reply decoded
~10% slower than with no drawing. So the interval stretches, up to ``MAX_DRAW_INTERVAL_S``, to keep the event loop's
CPU while a reply streams near ``LOOP_BUDGET`` of a core: a fast machine (or a small window) still draws every
``DRAW_INTERVAL_S``, a slow one draws a little less often instead of decoding slower.
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

DRAW_INTERVAL_S = 0.1  # the shortest interval between draws
MAX_DRAW_INTERVAL_S = 0.2  # the longest: five draws a second still reads as streaming
# The share of a core the event loop aims for while a reply streams (the ceiling wins). The chat bench allows the app
# 3% of the decoding's speed; the loop's wake-ups for messages and timers come on top of its drawing.
LOOP_BUDGET = 0.02


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


class DrawPace:
    """The interval between the draws of streaming text, from the event loop's CPU (see the module's doc)."""

    def __init__(self) -> None:
        self.interval = DRAW_INTERVAL_S  # until the next draw
        self._cpu_at = 0.0  # the event loop thread's CPU time at the last draw

    def begin(self) -> None:
        """A reply starts: the app's work before it is not its drawing."""
        self._cpu_at = time.thread_time()

    def next(self) -> float:
        """The interval to the next draw: the event loop's CPU since the last draw (this draw's call and the frame
        and layouts of the last one, with whatever else the app did meanwhile) over ``LOOP_BUDGET``, between
        ``DRAW_INTERVAL_S`` and ``MAX_DRAW_INTERVAL_S``; halfway from the last interval, so one costly draw (a
        layout) does not swing it. Called on the event loop's thread (thread_time is that thread's CPU)."""
        now = time.thread_time()
        cpu, self._cpu_at = now - self._cpu_at, now
        wanted = min(MAX_DRAW_INTERVAL_S, max(DRAW_INTERVAL_S, cpu / LOOP_BUDGET))
        self.interval = (self.interval + wanted) / 2
        return self.interval


class ReplyStream:
    """Buffers the streaming reply's tokens for ``owner`` (which handles ``TextWaiting`` by calling ``draw``)."""

    def __init__(self, owner: Widget, with_draw: Callable[[], None]) -> None:
        self._owner = owner
        # Called at each draw, before the text is drawn: what it changes on screen (the status line's tokens/s) is
        # then ready for the draw's frame; called after, it missed that frame and cost a frame of its own.
        self._with_draw = with_draw
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._draw_pending = False  # a TextWaiting is posted or a draw is scheduled
        self.tokens = 0  # of the streaming reply, counted on the backend's thread
        self.first_token_at = 0.0
        self.bubble: MessageBubble | None = None  # where the text is drawn (set once the reply's bubble exists)
        self._skipped = False  # a draw came before the bubble: the text waits in the buffer for draw_into
        self._next: Timer | None = None  # the next draw, while text keeps coming
        self.pace = DrawPace()

    def begin(self) -> None:
        self.tokens = 0
        self.pace.begin()

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
            self._with_draw()
            await self.bubble.stream(text)
            self._next = self._owner.set_timer(self.pace.next(), self.draw)

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
