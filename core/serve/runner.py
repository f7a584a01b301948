"""One request's reply, from the chat engine's worker thread to the server's event loop.

The engine calls a listener on its worker thread for each event; ``ReplyStream`` matches the request's stop
sequences there (so the stop flag is set before the next token is decoded) and hands the text, minus any stop
sequence, to the event loop. The hand-off is batched: the worker appends to a list, and wakes the loop only when
the loop waits for it; the loop takes everything that arrived since its last turn (``batches``), at most once a
frame (``FRAME_S``) while the reply flows, at once when it ends. What a frame holds goes out as one chunk (one
SSE event, one NDJSON line): the loop, which shares the GIL and (on a small machine) the cores with the decode,
wakes and writes once per frame rather than once per token, and the client parses a few tokens' text at a time
(with a chunk per token the two took ~6% of decode speed here). A slow model's tokens go out as they come.
Closing the stream (the client left) sets the request's own stop flag: its generation ends within a token, and the
requests queued behind it go on. Tokens' log-probabilities (when asked) travel with the text, each once its token's
text has been passed on (``HeldLogprobs``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from tuillm.core.chat.events import ChatEvent, ReplyDone, ReplyFailed, ReplyStarted, Token
from tuillm.core.chat.plain import Prompt
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.model import TokenLogprob
from tuillm.core.llama.options import Sampling
from tuillm.core.serve.models import SERVER_TERMS, LoadTerms, ModelHost, ServedModel

MAX_STOPS = 16  # OpenAI takes up to 4; Ollama clients send a model's few
MAX_STOP_CHARS = 512
FRAME_S = 1 / 30  # the most often a flowing stream is written to: smooth to the eye, and each write is one chunk
# that the server builds and the client parses (per token, both took CPU from decoding on a small machine)
_NOTHING, _ANY, _END = 0, 1, 2  # what the waiting loop wants to be woken for: nothing, any item, the reply's end


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


class HeldLogprobs:
    """Tokens' log-probabilities, each held until the text it ends has been passed on: the entries sent spell the
    text sent, so a token held back (it may start a stop sequence) or cut with one is not reported before it."""

    def __init__(self) -> None:
        self._fed = 0  # characters of the tokens' text so far
        self._passed = 0  # of which passed on
        self._held: deque[tuple[int, TokenLogprob]] = deque()  # (where its text ends, the entry)

    def feed(self, token: Token) -> None:
        self._fed += len(token.text)
        if token.logprob is not None:
            self._held.append((self._fed, token.logprob))

    def passed(self, text: str) -> list[TokenLogprob]:
        """The entries whose text is now passed on, ``text`` included."""
        self._passed += len(text)
        out = []
        while self._held and self._held[0][0] <= self._passed:
            out.append(self._held.popleft()[1])
        return out


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
    logprobs: tuple[TokenLogprob, ...] | None = None  # when the request asked for them


class ReplyStream:
    """Iterate ``batches`` for the reply's text pieces; then ``finished``. The first piece waits until the reply
    starts, so a refused request (a prompt too long) raises before anything is sent."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._loop = asyncio.get_running_loop()
        self._items: list[str | ChatEvent | TokenLogprob] = []  # appended on the worker thread, taken on the loop
        self._lock = threading.Lock()
        self._want = _NOTHING
        self._waiter: asyncio.Future[None] | None = None
        self._matcher = StopMatcher(stops)
        self._pieces: list[str] = []
        self._held = HeldLogprobs()
        self._logprobs: list[TokenLogprob] | None = None  # all sent (None: not asked for)
        self._new_logprobs: list[TokenLogprob] = []  # since the last batch
        self.future: Future[ReplyDone] | None = None
        self.stop = StopFlag()
        self.finished: Finished | None = None
        self.left = False  # the client disconnected before the reply was done
        self.load_s = 0.0

    async def start(self, host: ModelHost, model: ServedModel, prompt: Prompt,
                    sampling: Sampling, terms: LoadTerms = SERVER_TERMS) -> None:
        """Queues the reply (the model loaded on ``terms``) and waits for it to start: a load or prompt error raises
        here."""
        self._logprobs = [] if sampling.logprobs is not None else None
        self.future, self.load_s = await host.reply(model, prompt, sampling, self._listen, self.stop, terms)
        items = await self._take()
        with self._lock:
            self._items[:0] = items  # put back: ReplyStarted (``batches`` passes over it), ReplyFailed or ReplyDone
        if isinstance(items[0], ReplyFailed):
            await asyncio.wrap_future(self.future)  # raises the engine's TuillmError

    def _listen(self, event: ChatEvent) -> None:  # on the engine's worker thread
        if isinstance(event, Token):
            self._held.feed(event)
            text = self._matcher.feed(event.text)
            if self._matcher.hit:
                self.stop.set()  # before the next token is decoded
            # The text and the entries it releases in one put: the loop takes them in one batch.
            self._put(*([text] if text else []), *self._held.passed(text))
        elif isinstance(event, ReplyDone | ReplyFailed):
            tail = self._matcher.flush()
            self._put(*([tail] if tail else []), *self._held.passed(tail), event, end=True)
        elif isinstance(event, ReplyStarted):
            self._put(event)

    def _put(self, *items: str | ChatEvent | TokenLogprob, end: bool = False) -> None:  # on the worker thread
        if not items:
            return
        with self._lock:
            self._items.extend(items)
            wake = self._want == _ANY or (end and self._want == _END)
            if wake:
                self._want = _NOTHING
        if wake:  # else the loop is busy, or waits for its next frame: it takes this one with the others
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:  # on the loop
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _take(self, not_before: float = 0.0) -> list[str | ChatEvent | TokenLogprob]:
        """All that arrived, once something has and the loop's clock is past ``not_before``; at once when the
        reply has ended."""
        while True:
            early = self._loop.time() < not_before
            with self._lock:
                items = self._items
                if items and (not early or isinstance(items[-1], ReplyDone | ReplyFailed)):
                    self._items = []
                    return items
                self._want = _END if early else _ANY
                self._waiter = self._loop.create_future()
            timer = self._loop.call_at(not_before, self._wake) if early else None
            try:
                await self._waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
                with self._lock:
                    self._want = _NOTHING

    async def batches(self) -> AsyncIterator[list[str]]:
        """The reply's text as it comes: the pieces that arrived since the last batch; sets ``finished`` at the
        end. Leaving early (a client that closed the connection: the task is cancelled) stops the generation."""
        assert self.future is not None, "start() first"
        try:
            ended, not_before = False, 0.0
            while not ended:
                texts: list[str] = []
                for item in await self._take(not_before):
                    if isinstance(item, str):
                        texts.append(item)
                    elif isinstance(item, TokenLogprob):
                        self._new_logprobs.append(item)
                    elif isinstance(item, ReplyDone | ReplyFailed):
                        ended = True
                if texts or self._new_logprobs:
                    self._pieces.extend(texts)
                    not_before = self._loop.time() + FRAME_S
                    yield texts
            done = await asyncio.wrap_future(self.future)
            self.finished = self._finish(done)
        finally:
            self.stop.set()  # a no-op when the reply has ended

    @property
    def logprobs_asked(self) -> bool:
        return self._logprobs is not None

    def take_logprobs(self) -> list[TokenLogprob]:
        """The log-probabilities of the batch just yielded (its tokens'; [] when not asked for)."""
        taken, self._new_logprobs = self._new_logprobs, []
        if self._logprobs is not None:
            self._logprobs.extend(taken)
        return taken

    async def text(self) -> Finished:
        """The whole reply (not streamed)."""
        async for _ in self.batches():
            self.take_logprobs()
        assert self.finished is not None
        return self.finished

    def _finish(self, done: ReplyDone) -> Finished:
        stats = done.stats
        reason = "stop" if self._matcher.hit else stats.finish_reason
        return Finished("".join(self._pieces), stats.prompt_tokens, stats.generated_tokens, reason,
                        stats.total_s, self.load_s, stats.ttft_s,
                        None if self._logprobs is None else tuple(self._logprobs))

    def finish_of(self, future: Future[ReplyDone]) -> Finished | None:
        """How a reply nobody waited for ended (None: it failed)."""
        return None if future.cancelled() or future.exception() else self._finish(future.result())

    def cancel(self) -> None:
        self.stop.set()
