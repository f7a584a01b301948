"""The Chat pane's part of the memory guard (a mixin of ``ChatPane``): when available RAM falls under the guard's
floor (another program grew), the pane asks once per drop — unload the model, reload it with a smaller context, or
keep it — instead of waiting for the OOM killer.

A reply that is streaming goes on while the question is shown: llama.cpp allocates the whole context's KV cache
when the model loads, so generating grows nothing, and stopping would lose the answer for no gain. Unloading or
reloading stops it first (as Esc does: the text so far is saved).

Both answers close the backend and start a fresh one (the ``ChatBackend`` contract has ``close`` — stop, unload,
end its thread — and nothing else that frees the model), on a worker: freeing a large model must not freeze the
screen. A reload loads into the fresh backend only after the old model is gone, so the memory it needs is there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from textual.app import App
from textual.message import Message

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.events import ChatEmit, ModelLoaded
from tuillm.core.events import Emit
from tuillm.core.llama.options import LoadOptions
from tuillm.core.models import guard
from tuillm.core.models.hardware import Memory
from tuillm.tui.jobs import run_job
from tuillm.tui.panes.chat_loads import LOAD_JOB, ModelReady, load_checked
from tuillm.tui.screens.memory import Answer, MemoryScreen
from tuillm.tui.session import Session


class MemoryFreed(Message):
    """The model was unloaded for the memory guard."""


def shed(old: ChatBackend, new: ChatBackend, path: Path, options: LoadOptions | None, available_ram: int | None,
         emit: Emit) -> ModelLoaded | None:
    """On a worker: the old backend closed (its reply stopped, its model freed), then ``path`` loaded into ``new``
    with ``options`` (None: nothing loaded)."""
    old.close()
    if options is None:
        return None
    return load_checked(new, path, options, available_ram, emit)


class ChatMemory:
    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatDialogs.
    app: App[int]
    session: Session
    engine: ChatBackend
    new_engine: Callable[[], ChatBackend]
    model_name: str
    model_loading: bool
    busy: bool
    notify: Callable[..., None]
    _forward: ChatEmit
    _set_status: Callable[[str | None], None]
    _refresh_header: Callable[[], None]
    _load_options: Callable[[Path], LoadOptions]
    _memory_question: bool = False  # the question is on screen: a new drop does not stack another

    def memory_critical(self, memory: Memory) -> bool:
        """Available RAM fell under the floor: ask what to shed. False when there is nothing to offer (no model
        loaded, one loading, or the question already open)."""
        if not self.engine.loaded or self.model_loading or self._memory_question or self.engine.model_path is None:
            return False
        n_ctx = self.engine.n_ctx
        path = Path(self.engine.model_path)
        self._memory_question = True
        screen = MemoryScreen(guard.describe(memory), self.model_name, n_ctx, guard.smaller_context(n_ctx))
        self.app.push_screen(screen, partial(self._memory_answered, path, screen.smaller))
        return True

    def _memory_answered(self, path: Path, smaller: int | None, answer: Answer | None) -> None:
        self._memory_question = False
        if answer not in ("unload", "reload") or self.engine.model_path != str(path):
            return  # kept (the status line goes on warning), or the model changed meanwhile
        options = None
        if answer == "reload" and smaller is not None:
            options = replace(self._load_options(path), n_ctx=smaller)  # the chat's adapter and settings kept
        old = self.engine
        old.stop()  # a streaming reply ends at its next token; its text so far is saved
        self.new_engine()
        self.model_loading = True  # until the old model is gone: a message now must not load beside it
        if options is None:
            self.notify(f"unloading {self.model_name} to free memory; the next message loads it again",
                        title="Memory", severity="warning")
            self._set_status(None)
        else:
            self.notify(f"reloading {self.model_name} with a context of {smaller} tokens to free memory",
                        title="Memory", severity="warning")
            self._set_status(f"{self.model_name} (reloading…)")
        self._refresh_header()
        job = partial(shed, old, self.engine, path, options, self.session.available_ram)
        run_job(self, LOAD_JOB, job, lambda loaded: MemoryFreed() if loaded is None else ModelReady(loaded),
                exclusive=False)

    def on_memory_freed(self, _message: MemoryFreed) -> None:
        self.model_loading = False
        self._set_status(None)
        self._refresh_header()
