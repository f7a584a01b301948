"""A chat backend with no model for the snapshot tests: it streams fixed tokens with fixed figures.

It keeps ``core.chat.backend.ChatBackend``'s contract as ``ChatSession`` does (its own worker thread, futures,
events to ``emit`` then to a reply's listener, ``stop`` before the next token), so the Chat pane runs exactly as it
does over llama.cpp while every screen is the same on every machine. Behaviour tests use the real demo model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tuillm.core.chat.backend import ChatMessage
from tuillm.core.chat.events import (
    ChatEmit,
    ChatEvent,
    ModelLoaded,
    ModelUnloaded,
    ReplyDone,
    ReplyStarted,
    ReplyStats,
    Token,
)
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions, Sampling

# A Markdown reply, token by token (a code block, so the snapshot shows how one is drawn).
REPLY_TOKENS: tuple[str, ...] = (
    "Use", " slicing", ":", "\n\n", "```", "python", "\n", "items", "[::-1]", "\n", "```", "\n\n", "or", " `",
    "reversed", "(items)", "`", " for", " an", " iterator", ".",
)
TOKENS_PER_S = 25.0
TTFT_S = 0.05


def prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """A stand-in token count: words, and four tokens of template per message."""
    return sum(len(m["content"].split()) + 4 for m in messages)


class FakeBackend:
    """``ChatBackend`` over nothing: loads any path at once and answers every message with ``tokens``."""

    def __init__(self, emit: ChatEmit, tokens: Sequence[str] = REPLY_TOKENS) -> None:
        self._emit = emit
        self._tokens = tuple(tokens)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-chat")
        self._path: str | None = None
        self.options: LoadOptions | None = None  # what the last load was asked for (tests read it)
        self._n_ctx = 0
        self._used = 0
        self._stops: set[threading.Event] = set()
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._path is not None

    @property
    def model_path(self) -> str | None:
        return self._path

    @property
    def lora_path(self) -> str | None:
        return self.options.lora_path if self._path is not None and self.options is not None else None

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def context_used(self) -> int:
        return self._used

    def load(self, path: str | Path, options: LoadOptions | None = None) -> Future[ModelLoaded]:
        return self._worker.submit(self._load, str(Path(path).expanduser()), options or LoadOptions())

    def _load(self, path: str, options: LoadOptions) -> ModelLoaded:
        if self._path is not None:
            self._emit(ModelUnloaded(self._path))
        self._path, self._n_ctx, self._used, self.options = path, options.n_ctx, 0, options
        event = ModelLoaded(path=path, n_ctx=options.n_ctx, n_gpu_layers=0, load_seconds=0.0)
        self._emit(event)
        return event

    def count_tokens(self, messages: Sequence[ChatMessage]) -> Future[int]:
        return self._worker.submit(self._count, list(messages))

    def _count(self, messages: list[ChatMessage]) -> int:
        if self._path is None:
            raise TuillmError("no model is loaded")
        return prompt_tokens(messages)

    def reply(self, messages: Sequence[ChatMessage], sampling: Sampling | None = None,
              listener: ChatEmit | None = None) -> Future[ReplyDone]:
        stop = threading.Event()
        with self._lock:
            self._stops.add(stop)

        def emit(event: ChatEvent) -> None:
            self._emit(event)
            if listener is not None:
                listener(event)

        return self._worker.submit(self._reply, list(messages), sampling or Sampling(), stop, emit)

    def _reply(self, messages: list[ChatMessage], sampling: Sampling, stop: threading.Event,
               emit: ChatEmit) -> ReplyDone:
        try:
            prompt = prompt_tokens(messages)
            emit(ReplyStarted(prompt_tokens=prompt, cached_tokens=0))
            sent: list[str] = []
            for text in self._tokens[: sampling.max_tokens]:
                if stop.is_set():
                    break
                sent.append(text)
                emit(Token(text))
            n = len(sent)
            self._used = prompt + n
            stats = ReplyStats(prompt_tokens=prompt, cached_tokens=0, generated_tokens=n, ttft_s=TTFT_S,
                               tokens_per_s=TOKENS_PER_S, total_s=TTFT_S + n / TOKENS_PER_S,
                               finish_reason="cancelled" if stop.is_set() else "stop", n_ctx=self._n_ctx,
                               context_used=self._used)
            done = ReplyDone(text="".join(sent), stats=stats)
            emit(done)
            return done
        finally:
            with self._lock:
                self._stops.discard(stop)

    def stop(self) -> None:
        with self._lock:
            for stop in self._stops:
                stop.set()

    def close(self) -> None:
        self.stop()
        self._worker.shutdown(wait=True)


def gated_backend(lines: int) -> type[FakeBackend]:
    """A fake backend class whose reply is ``lines`` lines, one token per ``gate.release()``: the test decides
    when the reply grows (set a fresh ``gate`` at the start of each test)."""

    class GatedBackend(FakeBackend):
        gate = threading.Semaphore(0)

        def __init__(self, emit: ChatEmit) -> None:
            def gated(event: ChatEvent) -> None:
                if isinstance(event, Token):
                    GatedBackend.gate.acquire(timeout=30)  # bounded: a broken test must not hang the app's close
                emit(event)

            super().__init__(gated, tokens=[f"Line {i}.\n\n" for i in range(lines)])

    return GatedBackend
