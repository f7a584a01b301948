"""One request's reply, from the chat engine's worker thread to the server's event loop.

The engine calls a listener on its worker thread for each event; ``ReplyStream`` matches the request's stop
sequences there (so the stop flag is set before the next token is decoded) and hands the text, minus any stop
sequence, to the event loop through an ``asyncio.Queue``. Closing the stream (the client left) sets the request's
own stop flag: its generation ends within a token, and the requests queued behind it go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from tuillm.core.chat.events import ChatEvent, ReplyDone, ReplyFailed, ReplyStarted, Token
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.options import Sampling
from tuillm.core.serve.models import ModelHost, ServedModel

MAX_STOPS = 16  # OpenAI takes up to 4; Ollama clients send a model's few
MAX_STOP_CHARS = 512


class StopMatcher:
    """Cuts a stream of text at the first stop sequence, holding back a tail that may be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        """The text that can be passed on now."""
        if self.hit:
            return ""
        text = self.held + piece
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.hit, self.held = True, ""
            return text[: min(cuts)]
        keep = max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        text, self.held = ("" if self.hit else self.held), ""
        return text


@dataclass(frozen=True)
class Finished:
    """How the reply ended: its text (stop sequence cut), counts and timings."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "cancelled"
    total_s: float
    load_s: float
    ttft_s: float


class ReplyStream:
    """Iterate for the reply's text pieces; then ``finished``. The first piece waits until the reply starts, so a
    refused request (a prompt too long) raises before anything is sent."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[str | ChatEvent] = asyncio.Queue()
        self._matcher = StopMatcher(stops)
        self._pieces: list[str] = []
        self.future: Future[ReplyDone] | None = None
        self.stop = StopFlag()
        self.finished: Finished | None = None
        self.left = False  # the client disconnected before the reply was done
        self.load_s = 0.0

    async def start(self, host: ModelHost, model: ServedModel, messages: list[dict[str, str]],
                    sampling: Sampling, raw: bool = False) -> None:
        """Queues the reply and waits for it to start: a load or prompt error raises here."""
        self.future, self.load_s = await host.reply(model, messages, sampling, self._listen, self.stop, raw)
        first = await self._queue.get()
        if isinstance(first, ReplyFailed | ReplyDone):
            self._queue.put_nowait(first)
            if isinstance(first, ReplyFailed):
                await asyncio.wrap_future(self.future)  # raises the engine's TuillmError

    def _listen(self, event: ChatEvent) -> None:  # on the engine's worker thread
        if isinstance(event, Token):
            text = self._matcher.feed(event.text)
            if self._matcher.hit:
                self.stop.set()  # before the next token is decoded
            if text:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, text)
        elif isinstance(event, ReplyDone | ReplyFailed):
            tail = self._matcher.flush()
            if tail:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, tail)
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        elif isinstance(event, ReplyStarted):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def pieces(self) -> AsyncIterator[str]:
        """The reply's text as it comes; sets ``finished`` at the end. Leaving early (a client that closed the
        connection: the task is cancelled) stops the generation."""
        assert self.future is not None, "start() first"
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, str):
                    self._pieces.append(item)
                    yield item
                elif isinstance(item, ReplyDone | ReplyFailed):
                    break
            done = await asyncio.wrap_future(self.future)
            self.finished = self._finish(done)
        finally:
            self.stop.set()  # a no-op when the reply has ended

    async def text(self) -> Finished:
        """The whole reply (not streamed)."""
        async for _ in self.pieces():
            pass
        assert self.finished is not None
        return self.finished

    def _finish(self, done: ReplyDone) -> Finished:
        stats = done.stats
        reason = "stop" if self._matcher.hit else stats.finish_reason
        return Finished("".join(self._pieces), stats.prompt_tokens, stats.generated_tokens, reason,
                        stats.total_s, self.load_s, stats.ttft_s)

    def finish_of(self, future: Future[ReplyDone]) -> Finished | None:
        """How a reply nobody waited for ended (None: it failed)."""
        return None if future.cancelled() or future.exception() else self._finish(future.result())

    def cancel(self) -> None:
        self.stop.set()
