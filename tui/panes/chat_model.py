"""Which model the Chat pane talks to, and loading it off the event loop.

A chat owns its model: the file, a LoRA adapter GGUF over it with its scale, and the load settings it was loaded
with (context, GPU layers, threads…), all kept on the chat (``ChatStore.set_model``) and loaded again when the chat
is reopened. A file that is gone is said and the model picker opens; a new choice is recorded and said, never
silent. A new chat goes on with the current model (the demo model at first), loaded with the first message so the
app starts without touching llama.cpp.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from textual.app import App

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.events import ReplyDone
from tuillm.core.chat.store import CHAT_LOAD_OPTIONS, Chat, ChatStore, StoreError
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions
from tuillm.core.settings import load_options_for
from tuillm.core.text import safe_line
from tuillm.tui.jobs import run_job
from tuillm.tui.panes.chat_layout import HeaderModel
from tuillm.tui.panes.chat_loads import LOAD_JOB, LoadFailed, LoadOrder, LoadRequest, ModelReady, load_in_order
from tuillm.tui.session import ChatUse, Session

if TYPE_CHECKING:  # the picker's module (and the Models pane's discovery it uses) loads when it opens
    from tuillm.tui.screens.pick_model import ModelChoice

DEMO = "demo"


@dataclass(frozen=True)
class Turn:
    """A step of a conversation (send, regenerate, edit and resend); it may wait for the model to load first."""

    run: Callable[[Conversation], Future[ReplyDone]]
    typed: bool = False  # sends the prompt's text: the prompt is emptied (or given its draft back) once it starts
    prompt: str = ""  # the prompt's text as it was sent (a typed turn): what is typed after it, while the model
    # loads, is kept


def model_label(path: str | Path) -> str:
    """How the header and status line name a model: "demo", or its file name."""
    from tuillm.core.paths import demo_model_path

    demo = demo_model_path()
    return DEMO if demo is not None and Path(path) == demo else Path(path).name


def chat_label(path: str | Path, adapter: str | Path | None) -> str:
    """A model with the LoRA adapter over it: "base.gguf + style.gguf"."""
    return model_label(path) + (f" + {Path(adapter).name}" if adapter else "")


def context_used(messages: Sequence[StoredMessage]) -> int:
    """Tokens a chat holds in the context, as its last reply's figures give them (0: no reply yet)."""
    def count(stats: Mapping[str, Any], key: str) -> int:
        value = stats.get(key)  # a database row: anything may be there
        return int(value) if isinstance(value, int | float) and value > 0 else 0

    for message in reversed(messages):
        stats = message.stats
        if message.role == "assistant" and isinstance(stats, Mapping) and stats:
            # A reply kept before replies kept their context use: its prompt and its own tokens.
            return count(stats, "context_used") or count(stats, "prompt_tokens") + count(stats, "generated_tokens")
    return 0


class ChatModels:
    """The Chat pane's model (a mixin of ``ChatPane``): which one the next turn uses, and loading it on a worker."""

    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatMemory.
    session: Session
    engine: ChatBackend
    _engine: ChatBackend | None  # the backend if made (``engine`` makes one)
    store: ChatStore | None
    chat_id: int | None
    model_path: Path | None
    model_name: str
    adapter_path: Path | None = None  # the LoRA adapter GGUF over the model (None: none)
    chat_load: Mapping[str, Any] = MappingProxyType({})  # the open chat's own load settings (LoadOptions fields)
    loaded_with: LoadOptions | None = None  # what the loaded model was loaded with for a chat (None: not known)
    model_missing: bool = False  # the open chat's model file is gone: nothing is sent until another is picked
    model_loading: bool
    _order: LoadOrder | None = None  # the pane's loads (made with the first, or the memory guard's first close)
    _failed: frozenset[tuple[str, str | None]] = frozenset()  # the models (with adapters) whose last load failed
    # The turn waiting for the model, with the chat it was asked in (None: a new chat): it runs when the last load
    # ends, and only in that chat.
    _waiting: tuple[Turn, int | None] | None = None
    busy: bool
    notify: Callable[..., None]
    app: App[int]
    _set_status: Callable[[str | None], None]
    stored_messages: Callable[[], list[StoredMessage]]
    _refresh_header: Callable[[], None]
    _begin: Callable[[Turn], Awaitable[None]]

    def _open_chat(self) -> Chat | None:
        return None if self.chat_id is None else self._stored_chat(self.chat_id)

    def _stored_chat(self, chat_id: int) -> Chat | None:
        """The stored chat (None: deleted, or the store cannot say)."""
        if self.store is None:
            return None
        try:
            return self.store.get_chat(chat_id)
        except StoreError:
            return None

    def adopt_chat_model(self) -> None:
        """The open chat was just opened: its model, adapter and load settings are what the next turn uses (a chat
        kept without a model, or a new chat, goes on with the current ones). A file that is gone is said, and the
        picker offers another: never silently replaced."""
        chat = self._open_chat()
        was_missing, self.model_missing = self.model_missing, False
        if chat is None or not chat.model:
            if was_missing:  # a gone file is not carried into a chat without a model of its own
                self.model_path = Path(self.engine.model_path) if self.engine.model_path else None
                self.adapter_path = Path(self.engine.lora_path) if self.engine.lora_path else None
                self.chat_load = MappingProxyType({})
                self._name_model()
            return
        self.model_path = Path(chat.model)
        self.adapter_path = Path(chat.adapter) if chat.adapter else None
        self.chat_load = MappingProxyType(chat.load_values)
        self._name_model()
        self.model_missing = self._gone() is not None
        if self.model_missing:  # the picker says so, and offers another (Esc: the chat waits, and says why)
            self.pick_model(self._gone() or "")

    def _gone(self) -> str | None:
        """Which of the chat's files is gone, in words (None: both are there)."""
        for path, what in ((self.model_path, "model"), (self.adapter_path, "adapter")):
            if path is not None and not path.is_file():
                return f"{path.name}: this chat's {what} file is gone"
        return None

    def _name_model(self) -> None:
        self.model_name = chat_label(self.model_path, self.adapter_path) if self.model_path else DEMO

    def model_gone(self) -> bool:
        """True (and says so) when the open chat's model or adapter file is gone, unless it is still loaded: a file
        deleted while loaded stays readable until the model is unloaded, so the chat keeps working until then."""
        gone = self.model_missing and not self._model_ready()
        if gone:
            self.notify(f"{self._gone() or self.model_name}; the chat is kept. Pick another model (Ctrl+T, or Enter "
                        "in Models) to go on with it", title="Model", severity="warning", timeout=15)
        return gone

    def file_deleted(self, _path: Path) -> None:
        """A model file was deleted (the Models pane says so on the Session's board): the open chat's header says
        "file missing" at once when it was one of its own (the picker waits for its next message)."""
        if not self.model_missing and self._gone() is not None:
            self.model_missing = True
            self._refresh_header()

    def pick_model(self, reason: str = "") -> None:
        """The model picker for the open chat (its key, or a gone file): the choice is recorded on the chat."""
        from tuillm.tui.screens.pick_model import PickModelScreen

        if isinstance(self.app.screen, PickModelScreen):
            return
        scale = self.chat_load.get("lora_scale", CHAT_LOAD_OPTIONS["lora_scale"].default)
        screen = PickModelScreen(self.session, reason=reason, current=self.model_path, adapter=self.adapter_path,
                                 lora_scale=scale)
        self.app.push_screen(screen, self._model_picked)

    def action_pick_model(self) -> None:
        self.pick_model()

    def _model_picked(self, choice: ModelChoice | None) -> None:
        if choice is not None:
            self.use_model(choice.path, adapter=choice.adapter, lora_scale=choice.lora_scale)

    def use_model(self, path: str | Path, *, adapter: Path | None = None, lora_scale: float | None = None) -> None:
        """Chat with this model (and adapter) from now on, loading it at once, with the load settings it has now
        (Settings, then the model's own). An open chat records the choice, and it is said: never silent."""
        self.model_path, self.adapter_path = Path(path), adapter
        # The scale chosen; the rest as this model loads now.
        self.chat_load = MappingProxyType({} if lora_scale is None else {"lora_scale": lora_scale})
        self.chat_load = MappingProxyType(self.load_snapshot())
        self._name_model()
        chat, self.model_missing = self._open_chat(), False
        if chat is not None and (chat.model, chat.adapter, chat.load_values) != self._chat_row():
            self.record_model(chat.id)
            self.notify(f"this chat now uses {self.model_name}", title="Model")
        if self.busy:
            self.engine.stop()
        self._load(None)

    def load_snapshot(self) -> dict[str, Any]:
        """The load settings a chat keeps: every declared one, as this model loads now (None: auto)."""
        options = self._load_options(self.model_path or self._wanted_model())
        return {name: getattr(options, name) for name in CHAT_LOAD_OPTIONS}

    def _chat_row(self) -> tuple[str, str, dict[str, Any]]:
        return str(self.model_path or ""), str(self.adapter_path or ""), dict(self.chat_load)

    def record_model(self, chat_id: int) -> None:
        """Keep the model, adapter and load settings on the chat (a new chat's first turn, a new choice)."""
        if self.store is None or self.model_path is None:
            return
        if not self.chat_load:
            self.chat_load = MappingProxyType(self.load_snapshot())
        model, adapter, load = self._chat_row()
        try:
            self.store.set_model(chat_id, model, adapter=adapter, load=load)
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")

    def _load_options(self, path: Path) -> LoadOptions:
        """[load], the model's own settings, then the chat's own, and its adapter."""
        base = load_options_for(self.session.config, path)
        return replace(base, **self.chat_load, lora_path=str(self.adapter_path) if self.adapter_path else None)

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
        if then is not None:
            self._waiting = (then, self.chat_id)
        order, request = self._ask_load(path, self.model_name, self._load_options(path))
        self._set_status(f"{self.model_name} (loading…)")
        self._refresh_header()
        job = partial(load_in_order, order, self.engine, request, self.session.available_ram)
        run_job(self, LOAD_JOB, job, lambda ended: ended, exclusive=False)

    def _ask_load(self, path: Path, label: str, options: LoadOptions) -> tuple[LoadOrder, LoadRequest]:
        """A load counted among the pane's loads (a chat's, or the memory guard's reload): its ticket; loading."""
        order = self._loads()
        request = order.ask(path, label, options)
        self._failed -= {request.key}
        self.model_loading = True
        return order, request

    def _loads(self) -> LoadOrder:
        if self._order is None:
            self._order = LoadOrder()
        return self._order

    async def on_load_failed(self, event: LoadFailed) -> None:
        """A load failed: said under the name it was asked with; the newest one's failure ends loading."""
        event.stop()
        if event.error is not None:
            self._failed |= {event.request.key}
            self.notify(event.error, title=f"Could not load {event.request.label}", severity="error", timeout=15)
        await self._load_finished(event)

    async def on_model_ready(self, event: ModelReady) -> None:
        await self._load_finished(event)

    async def _load_finished(self, event: ModelReady | LoadFailed) -> None:
        """A load ended: once none is in flight, the newest one's end decides (``LoadOrder.end``), whichever load's
        end came last (an older load's end may come after the newest one's)."""
        ended = self._order.end(event) if self._order is not None else None
        if isinstance(ended, ModelReady):
            await self._model_loaded(ended)
        elif isinstance(ended, LoadFailed):
            if isinstance(event, ModelReady):  # the newest failed; an older one loaded after it was asked
                self.loaded_with = None  # (which of them loaded last is the backend's to say)
            self._load_ended()
        elif isinstance(event, LoadFailed):
            self._refresh_header()  # its chat's header says so; the newer load goes on, the waiting turn with it
        # Else another load is in flight: the backend loads it next, so a turn begun now would be written by it while
        # named after this one.

    def _load_ended(self) -> None:
        """The last load failed: nothing is loading, and the waiting message waits in the prompt."""
        self.model_loading = False
        self._waiting = None  # the message waits in the prompt for a model that loads
        if self.engine.loaded and self.engine.model_path and self.chat_id is None:
            # A refused load leaves the previous model loaded (the checks run first): a new chat goes on with it
            # (a chat that has its model keeps it: the message waits in the prompt for a model that loads).
            self.model_path = Path(self.engine.model_path)
            self.adapter_path = Path(self.engine.lora_path) if self.engine.lora_path else None
            self._name_model()
            self._set_status(f"{self.model_name} · ctx {self.engine.context_used}/{self.engine.n_ctx}")
        else:  # the model still loaded (the open chat's own is not), or none
            self._set_status(chat_label(self.engine.model_path, self.engine.lora_path) if self.engine.loaded
                             and self.engine.model_path else None)
        self._refresh_header()

    async def _model_loaded(self, event: ModelReady) -> None:
        """The newest load loaded: the turn waiting for it begins, in the chat it was asked in."""
        self.model_loading = False
        self.loaded_with = event.options
        if self._model_ready():
            self._set_status(f"{self.model_name} · ctx 0/{event.loaded.n_ctx}")
        else:  # loaded for a chat left meanwhile: the open chat's own model is not this one
            self._set_status(chat_label(self.engine.model_path or "", self.engine.lora_path))
        self._refresh_header()
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        turn, chat_id = waiting
        if chat_id == self.chat_id:
            await self._begin(turn)
            return
        # Another chat was opened (or this one deleted) while the model loaded: the turn belongs to the chat it was
        # asked in, never to the one open now; a typed message waits there, in that chat's draft.
        if chat_id is not None and self._stored_chat(chat_id) is None:
            where = "its chat was deleted"
        else:
            where = "it waits in that chat's prompt" if turn.typed else "nothing was answered"
        self.notify(f"the model is ready; the message asked in another chat was not sent ({where})", title="Chat",
                    severity="warning", timeout=10)

    def show_chat_status(self) -> None:
        """The status line for the chat just opened: its context use as its last reply left it (0: a new chat) when
        its model is the one loaded; another chat's figure never stays. With another model loaded, that model's
        name alone (this chat loads its own with its next message)."""
        engine = self._engine
        if self.model_loading or engine is None or not engine.loaded:
            return  # "loading…" or "no model loaded" says it already (and asking must not make a backend)
        if not self._model_ready():
            self._set_status(chat_label(engine.model_path or "", engine.lora_path))
            return
        self._set_status(f"{self.model_name} · ctx {context_used(self.stored_messages())}/{engine.n_ctx}")

    def model_key(self) -> tuple[str, str | None]:
        """The chat's model and adapter, as the backend names them once loaded."""
        return str(self.model_path), str(self.adapter_path) if self.adapter_path else None

    def header_model(self) -> HeaderModel:
        """How the header names the chat's model and says whether it is the one loaded: in full, and in fewer
        words for a narrow column."""
        name = safe_line(self.model_name)
        engine = self._engine  # asking must not make one (see ``engine``)
        order = self._order
        if self.model_missing:
            return HeaderModel(name, "file missing", "missing")
        if self.model_loading and (order is None or order.asked is None or order.loading(self.model_key())):
            # (nothing asked: the memory guard unloading it)
            return HeaderModel(name, "loading…", "loading…")
        if (engine is not None and engine.loaded and not self.model_loading and self.model_path is not None
                and (engine.model_path, engine.lora_path) == self.model_key()):
            return HeaderModel(name)
        if self.model_path is not None and self.model_key() in self._failed:
            return HeaderModel(name, "not loaded: its load failed", "not loaded")
        return HeaderModel(name, "loads with the next message", "not loaded")

    def files_in_use(self) -> ChatUse:
        """The files this pane uses now: loaded, being loaded (the newest load), the open chat's own."""
        engine = self._engine  # asking must not make one (see ``engine``)
        loaded = (engine.model_path, engine.lora_path) if engine is not None and engine.loaded else ()
        asked = self._order.asked if self._order is not None and self.model_loading else None
        loading = (str(asked.path), asked.options.lora_path) if asked is not None else ()
        return ChatUse(loaded=tuple(Path(p) for p in loaded if p), loading=tuple(Path(p) for p in loading if p),
                       chat=tuple(p for p in (self.model_path, self.adapter_path) if p is not None))

    def _model_ready(self) -> bool:
        """The chat's model is loaded with its adapter (and its settings, unless another load since, such as the
        memory guard's smaller context, changed them on purpose)."""
        if not (self.engine.loaded and self.model_path is not None and self.engine.model_path == str(self.model_path)
                and self.engine.lora_path == (str(self.adapter_path) if self.adapter_path else None)):
            return False
        return self.loaded_with is None or self.loaded_with == self._load_options(self.model_path)
