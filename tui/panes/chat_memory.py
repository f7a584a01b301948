"""The Chat pane's part of the memory guard (a mixin of ``ChatPane``): when available RAM falls under the guard's
floor (another program grew), the pane asks once per drop — unload the model, reload it with a smaller context, or
keep it — instead of waiting for the OOM killer.

A reply that is streaming goes on while the question is shown: llama.cpp allocates the whole context's KV cache
when the model loads, so generating grows nothing, and stopping would lose the answer for no gain. Unloading or
reloading stops it first (as Esc does: the text so far is saved).

Both answers close the backend and start a fresh one (the ``ChatBackend`` contract has ``close`` — stop, unload,
end its thread — and nothing else that frees the model), on a worker: freeing a large model must not freeze the
screen. Every load into the fresh backend waits until the old model is gone (``LoadOrder.freeing``), so the memory it
needs is there and a model picked meanwhile (Ctrl+T, "chat with this model", another chat's message) never loads
beside the one being freed. A reload is one of the pane's loads (``chat_loads``: a ticket), so a model picked
meanwhile goes in its place and its failure is said under the name of the model reloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from textual.app import App
from textual.message import Message

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.events import ChatEmit
from tuillm.core.errors import error_text
from tuillm.core.events import Emit
from tuillm.core.llama.options import LoadOptions
from tuillm.core.models import guard
from tuillm.core.models.hardware import Memory
from tuillm.tui.jobs import run_job
from tuillm.tui.panes.chat_loads import LOAD_JOB, LoadFailed, LoadOrder, LoadRequest, ModelReady, load_in_order
from tuillm.tui.panes.chat_model import chat_label
from tuillm.tui.screens.memory import Answer, MemoryScreen
from tuillm.tui.session import Session


class MemoryFreed(Message):
    """The memory guard's unload ended: the model freed (``error`` None), or why it could not be, in one line."""

    def __init__(self, label: str, error: str | None = None) -> None:
        super().__init__()
        self.label = label  # the model unloaded, as the status line named it
        self.error = error


def close_old(order: LoadOrder, old: ChatBackend) -> None:
    """On a worker: ``old.close()``, begun with ``order.freeing()``; the pane's loads go on once it has ended, whether
    it raised or not."""
    try:
        old.close()
    finally:
        order.freed()


def unload_model(order: LoadOrder, old: ChatBackend, label: str, _emit: Emit) -> MemoryFreed:
    """On a worker: the old backend closed (its reply stopped, its model freed)."""
    try:
        close_old(order, old)
    except Exception as exc:  # a bug's in one line, as run_job says it
        return MemoryFreed(label, error_text(exc))
    return MemoryFreed(label)


def reload_smaller(order: LoadOrder, old: ChatBackend, new: ChatBackend, request: LoadRequest,
                   available_ram: int | None, emit: Emit) -> ModelReady | LoadFailed:
    """On a worker: the old backend closed, then the model loaded into ``new`` with the smaller context, in its turn
    among the pane's loads (``load_in_order``: a load asked since, such as a model picked meanwhile, goes instead)."""
    try:
        close_old(order, old)
    except Exception as exc:
        return LoadFailed(request, error_text(exc))
    ended = load_in_order(order, new, request, available_ram, emit)
    # The smaller context is the guard's, not the chat's settings (None: the chat's model is ready with it).
    return ModelReady(ended.loaded, None, ended.ticket) if isinstance(ended, ModelReady) else ended


class ChatMemory:
    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatDialogs.
    app: App[int]
    session: Session
    engine: ChatBackend
    new_engine: Callable[[], ChatBackend]
    model_loading: bool
    busy: bool
    notify: Callable[..., None]
    _forward: ChatEmit
    _set_status: Callable[[str | None], None]
    _refresh_header: Callable[[], None]
    _load_options: Callable[[Path], LoadOptions]
    _ask_load: Callable[[Path, str, LoadOptions], tuple[LoadOrder, LoadRequest]]
    _loads: Callable[[], LoadOrder]
    _order: LoadOrder | None
    _memory_question: bool = False  # the question is on screen: a new drop does not stack another

    def memory_critical(self, memory: Memory) -> bool:
        """Available RAM fell under the floor: ask what to shed. False when there is nothing to offer (no model
        loaded, one loading, or the question already open)."""
        if not self.engine.loaded or self.model_loading or self._memory_question or self.engine.model_path is None:
            return False
        n_ctx = self.engine.n_ctx
        path = Path(self.engine.model_path)
        self._memory_question = True
        label = chat_label(path, self.engine.lora_path)  # the model loaded (the open chat's may be another)
        screen = MemoryScreen(guard.describe(memory), label, n_ctx, guard.smaller_context(n_ctx))
        self.app.push_screen(screen, partial(self._memory_answered, path, screen.smaller))
        return True

    def _memory_answered(self, path: Path, smaller: int | None, answer: Answer | None) -> None:
        self._memory_question = False
        if answer not in ("unload", "reload") or self.engine.model_path != str(path):
            return  # kept (the status line goes on warning), or the model changed meanwhile
        old = self.engine
        label = chat_label(path, old.lora_path)
        old.stop()  # a streaming reply ends at its next token; its text so far is saved
        self.new_engine()
        order = self._loads()
        order.freeing()  # every load into the fresh backend waits until the old one is closed (its worker ends it)
        if answer == "reload" and smaller is not None:
            options = replace(self._load_options(path), n_ctx=smaller, lora_path=old.lora_path)
            _, request = self._ask_load(path, label, options)  # counted among the pane's loads
            self.notify(f"reloading {label} with a context of {smaller} tokens to free memory", title="Memory",
                        severity="warning")
            self._set_status(f"{label} (reloading…)")
            self._refresh_header()
            job = partial(reload_smaller, order, old, self.engine, request, self.session.available_ram)
            run_job(self, LOAD_JOB, job, lambda ended: ended, exclusive=False)
            return
        self.model_loading = True  # until the old model is gone: a message now must not load beside it
        self.notify(f"unloading {label} to free memory; the next message loads it again", title="Memory",
                    severity="warning")
        self._set_status(None)
        self._refresh_header()
        run_job(self, LOAD_JOB, partial(unload_model, order, old, label), lambda freed: freed, exclusive=False)

    def on_memory_freed(self, message: MemoryFreed) -> None:
        if message.error is not None:
            self.notify(message.error, title=f"Could not unload {message.label}", severity="error", timeout=15)
        if (self._order is not None and self._order.in_flight) or self.engine.loaded:
            return  # a model picked meanwhile: its load decides what the status line says
        self.model_loading = False
        self._set_status(None)
        self._refresh_header()
