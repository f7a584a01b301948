"""The Chat pane's model loads, each with its ticket: a load knows which model it was for when it ends.

Another model may be picked while one loads (Ctrl+T, "chat with this model", another chat's message, the memory
guard's reload with a smaller context), so two loads can be in flight. Each is asked with a ``LoadRequest`` (a
ticket, the file, the name it is known by, its settings), and ends with a message that carries it: ``ModelReady`` or
``LoadFailed``. An older load that fails is said under its own name and changes nothing else; once no load is in
flight, the newest one's end decides the pane's state.

The fit check (the Models pane's marker) runs on the worker before the load reaches the backend, and a slow read
could let an older load reach it after a newer one: ``LoadOrder`` lets a load reach the backend only while it is
the newest asked, under one lock, so loads reach the backend (one worker, first come first served) in the order
they were asked: once the last of them has ended, the newest one's model is the one loaded (unless it failed).

The memory guard closes the old backend on a worker (freeing a large model takes a while) while the pane already
has a fresh one: ``LoadOrder`` also holds every load, before its fit check, until such a close has ended, so a
model picked meanwhile is never loaded beside the one being freed (the guard exists to avoid just that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.events import ModelLoaded
from tuillm.core.errors import TuillmError, error_text
from tuillm.core.events import Emit
from tuillm.core.llama.options import LoadOptions

LOAD_JOB = "chat-load"  # the worker group of every load (the memory guard's reload and unload too)
FREE_WAIT_S = 60.0  # the longest a load waits for the memory guard's close of the old model


@dataclass(frozen=True)
class LoadRequest:
    ticket: int
    path: Path
    label: str  # how the header names it ("base.gguf + style.gguf"), as it was when asked
    options: LoadOptions

    @property
    def key(self) -> tuple[str, str | None]:
        """The model and its adapter, as ``ChatModels.model_key`` gives them."""
        return str(self.path), self.options.lora_path or None


class ModelReady(Message):
    def __init__(self, loaded: ModelLoaded, options: LoadOptions | None, ticket: int) -> None:
        super().__init__()
        self.loaded = loaded
        self.options = options  # what the chat asked for (None: the memory guard's smaller reload)
        self.ticket = ticket  # the load's (a chat's, or the memory guard's reload)


class LoadFailed(Message):
    """A chat's load ended without its model: ``error`` in one line (None: a newer load was asked before this one
    reached the backend, so it was not tried)."""

    def __init__(self, request: LoadRequest, error: str | None) -> None:
        super().__init__()
        self.request = request
        self.error = error


class LoadOrder:
    """One pane's loads: their tickets, which of them are in flight, and the lock that lets a load reach the
    backend only while it is the newest asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.newest = 0  # the ticket of the newest load asked (set on the event loop, read on workers)
        self.asked: LoadRequest | None = None  # the newest load asked
        self.in_flight = 0  # loads asked and not ended
        self._newest_end: ModelReady | LoadFailed | None = None
        self._freeing = 0  # the memory guard's closes of old backends begun and not ended
        self._freed = threading.Condition()

    def ask(self, path: Path, label: str, options: LoadOptions) -> LoadRequest:
        self.newest += 1
        self.asked, self._newest_end = LoadRequest(self.newest, path, label, options), None
        self.in_flight += 1
        return self.asked

    def submit(self, ticket: int, load: Callable[[], Future[ModelLoaded]]) -> Future[ModelLoaded] | None:
        """``load()`` if ``ticket`` is still the newest (None: it is not, and nothing was loaded)."""
        with self._lock:
            return load() if ticket == self.newest else None

    def freeing(self) -> None:
        """The memory guard begins closing an old backend: loads wait until ``freed``. Called on the event loop
        before the close's worker starts, so that no load asked after it can slip in first."""
        with self._freed:
            self._freeing += 1

    def freed(self) -> None:
        """That close ended (the model freed, or the close raised)."""
        with self._freed:
            self._freeing -= 1
            self._freed.notify_all()

    def wait_freed(self) -> None:
        """On a load's worker: until no close begun by the memory guard is still freeing its model, or FREE_WAIT_S
        at most (a close whose worker was cancelled before it ran, at quit, must not hold the load's thread, and
        with it the process's exit, for good)."""
        with self._freed:
            self._freed.wait_for(lambda: not self._freeing, timeout=FREE_WAIT_S)

    def end(self, event: ModelReady | LoadFailed) -> ModelReady | LoadFailed | None:
        """A load ended: the newest one's end once no load is in flight (an older one that reached the backend
        before it may still change what is loaded), else None: nothing to act on yet."""
        ticket = event.request.ticket if isinstance(event, LoadFailed) else event.ticket
        self.in_flight = max(0, self.in_flight - 1)
        if self.asked is not None and ticket == self.asked.ticket:
            self._newest_end = event
        if self.in_flight or self._newest_end is None:
            return None
        ended, self._newest_end, self.asked = self._newest_end, None, None
        return ended

    def loading(self, key: tuple[str, str | None]) -> bool:
        """The newest load asked is this model's, and it has not ended."""
        return self.asked is not None and self._newest_end is None and self.asked.key == key


def check_fit(path: Path, options: LoadOptions, available_ram: int | None) -> None:
    """The Models pane's fit marker, judged against the same available RAM: what it marks "too big" is refused
    here, before llama.cpp is touched (the engine checks again against the live figure)."""
    from tuillm.core.models.memory import load_refusal
    from tuillm.core.models.metadata import read_info

    try:
        refusal = load_refusal(read_info(path), options, available_ram)
    except Exception:  # a bad file (or anything else): the backend's load reports it, this only pre-checks
        refusal = None
    if refusal is not None:
        raise TuillmError(refusal)


def load_in_order(order: LoadOrder, backend: ChatBackend, request: LoadRequest, available_ram: int | None,
                  _emit: Emit) -> ModelReady | LoadFailed:
    """A chat's load, on a worker: its end as the message that says it, with its ticket."""
    try:
        order.wait_freed()  # a model the memory guard is freeing is still in memory (and the fit check reads it)
        future = None
        if request.ticket == order.newest:  # (a load asked since: this one is not tried, not even checked)
            check_fit(request.path, request.options, available_ram)
            future = order.submit(request.ticket, lambda: backend.load(request.path, request.options))
        if future is None:
            return LoadFailed(request, None)
        return ModelReady(future.result(), request.options, request.ticket)
    except Exception as exc:  # a TuillmError's line, or a bug's in one line, as run_job says it
        return LoadFailed(request, error_text(exc))
