"""Which model the Chat pane talks to, and loading it off the event loop.

The model is chosen lazily: the demo model unless the user picked one (the Models pane's Enter), loaded with the
first message so the app starts without touching llama.cpp.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual.message import Message

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.events import ModelLoaded, ReplyDone
from tuillm.core.chat.store import Chat, ChatStore, StoreError
from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit
from tuillm.core.llama.options import LoadOptions
from tuillm.core.settings import load_options_for
from tuillm.tui.jobs import JobFailed, run_job
from tuillm.tui.session import Session

DEMO = "demo"
LOAD_JOB = "chat-load"  # the worker group of every load (and of the memory guard's unload): one failure handler


@dataclass(frozen=True)
class Turn:
    """A step of a conversation (send, regenerate, edit and resend); it may wait for the model to load first."""

    run: Callable[[Conversation], Future[ReplyDone]]
    typed: bool = False  # sends the prompt's text: the prompt is emptied (or given its draft back) once it starts


class ModelReady(Message):
    def __init__(self, loaded: ModelLoaded, then: Turn | None) -> None:
        super().__init__()
        self.loaded = loaded
        self.then = then  # the turn that waited for the model


def model_label(path: str | Path) -> str:
    """How the header and status line name a model: "demo", or its file name."""
    from tuillm.core.paths import demo_model_path

    demo = demo_model_path()
    return DEMO if demo is not None and Path(path) == demo else Path(path).name


def load_checked(backend: ChatBackend, path: Path, options: LoadOptions, available_ram: int | None,
                 _emit: Emit) -> ModelLoaded:
    """Loads ``path`` (on a worker thread; the backend's own events reach the pane through its emit).

    First the Models pane's fit marker, judged against the same available RAM: what it marks "too big" is
    refused here, before llama.cpp is touched (the engine checks again against the live figure).
    """
    from tuillm.core.models.memory import load_refusal
    from tuillm.core.models.metadata import read_info

    try:
        refusal = load_refusal(read_info(path), options, available_ram)
    except Exception:  # a bad file (or anything else): the backend's load reports it, this only pre-checks
        refusal = None
    if refusal is not None:
        raise TuillmError(refusal)
    return backend.load(path, options).result()


class ChatModels:
    """The Chat pane's model (a mixin of ``ChatPane``): which one the next turn uses, and loading it on a worker."""

    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatMemory.
    session: Session
    engine: ChatBackend
    store: ChatStore | None
    chat_id: int | None
    model_path: Path | None
    model_name: str
    model_missing: bool = False  # the open chat's model file is gone: nothing is sent until another is picked
    model_loading: bool
    busy: bool
    notify: Callable[..., None]
    _set_status: Callable[[str | None], None]
    _refresh_header: Callable[[], None]
    _begin: Callable[[Turn], Awaitable[None]]

    def _open_chat(self) -> Chat | None:
        if self.chat_id is None or self.store is None:
            return None
        try:
            return self.store.get_chat(self.chat_id)
        except StoreError:
            return None

    def adopt_chat_model(self) -> None:
        """The open chat was just opened: its model is the one the next turn uses (a chat kept without one, or a
        new chat, goes on with the current model). A model whose file is gone is said, never silently replaced."""
        chat = self._open_chat()
        was_missing, self.model_missing = self.model_missing, False
        if chat is None or not chat.model:
            if was_missing:  # a gone file is not carried into a chat without a model of its own
                self.model_path = Path(self.engine.model_path) if self.engine.model_path else None
                self.model_name = model_label(self.model_path) if self.model_path else DEMO
            return
        self.model_path = Path(chat.model)
        self.model_name = model_label(chat.model)
        self.model_missing = not self.model_path.is_file()
        if self.model_missing:
            self.model_gone()

    def model_gone(self) -> bool:
        """True (and says so) when the open chat's model file is gone."""
        if self.model_missing:
            self.notify(f"{self.model_path}: this chat's model file is gone; the chat is kept. Pick another model "
                        "in Models (F3, Enter) to go on with it", title="Model", severity="warning", timeout=15)
        return self.model_missing

    def use_model(self, path: str | Path, name: str | None = None) -> None:
        """Chat with this model from now on, loading it at once. An open chat records the new choice (and says so):
        its model never changes silently."""
        self.model_path = Path(path)
        self.model_name = name or model_label(path)
        chat, self.model_missing = self._open_chat(), False
        if chat is not None and self.store is not None and chat.model != str(self.model_path):
            try:
                self.store.update_chat(chat.id, model=str(self.model_path))
            except StoreError as exc:
                self.notify(str(exc), title="Chat", severity="error")
            self.notify(f"this chat now uses {self.model_name}", title="Model")
        if self.busy:
            self.engine.stop()
        self._load(None)

    def _wanted_model(self) -> Path:
        if self.model_path is None:
            from tuillm.core.models.catalog import resolve_model

            self.model_path = resolve_model(DEMO, self.session.config)
            self.model_name = DEMO
        return self.model_path

    def _load(self, then: Turn | None) -> None:
        try:
            path = self._wanted_model()
        except TuillmError as exc:
            self.notify(str(exc), title="Model", severity="error")
            return
        self.model_loading = True
        self._set_status(f"{self.model_name} (loading…)")
        self._refresh_header()
        job = partial(load_checked, self.engine, path, load_options_for(self.session.config, path),
                      self.session.available_ram)
        run_job(self, LOAD_JOB, job, lambda loaded: ModelReady(loaded, then), exclusive=False)

    def on_job_failed(self, event: JobFailed) -> None:
        if event.name != LOAD_JOB:
            return
        event.stop()
        self.model_loading = False
        self.notify(event.error, title=f"Could not load {self.model_name}", severity="error", timeout=15)
        if self.engine.loaded and self.engine.model_path and self.chat_id is None:
            # A refused load leaves the previous model loaded (the checks run first): a new chat goes on with it
            # (a chat that has its model keeps it: the message waits in the prompt for a model that loads).
            self.model_path = Path(self.engine.model_path)
            self.model_name = model_label(self.model_path)
            self._set_status(f"{self.model_name} · ctx {self.engine.context_used}/{self.engine.n_ctx}")
        else:
            self._set_status(None)
        self._refresh_header()

    async def on_model_ready(self, event: ModelReady) -> None:
        self.model_loading = False
        self._set_status(f"{self.model_name} · ctx 0/{event.loaded.n_ctx}")
        self._refresh_header()
        if event.then is not None:
            await self._begin(event.then)

    def _model_ready(self) -> bool:
        return self.engine.loaded and self.model_path is not None and self.engine.model_path == str(self.model_path)
