"""The Chat pane: the chat list, the streamed conversation and the prompt, over one chat backend for the app.

The backend (``core.chat.backend.ChatBackend``; llama.cpp's ``ChatSession`` unless the Session gives another
factory) owns the model on its own thread; its events are posted to this pane as messages from that thread, so
the event loop only draws. Each turn goes through ``core.chat.conversation.Conversation``, the same glue the CLI
uses, which saves the reply while it streams. Its parts: ``widgets.chat_list`` (the saved chats),
``widgets.chat_messages`` (the open chat's column), ``chat_stream`` (tokens to the screen), ``chat_model`` (which
model, and loading it), ``chat_memory`` (the memory guard's offer to unload or reload smaller).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.notifications import SeverityLevel
from textual.timer import Timer

from tuillm.core.chat.backend import ChatBackend, llama_backend
from tuillm.core.chat.conversation import DEFAULT_TITLE, Conversation
from tuillm.core.chat.events import ChatEvent, ContextTrimmed, ReplyStarted, Token
from tuillm.core.chat.store import Chat, ChatStore, StoreError
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.errors import TuillmError
from tuillm.core.events import Log
from tuillm.core.llama.options import Sampling
from tuillm.core.settings import load_options_for, sampling_defaults
from tuillm.core.text import safe_line, safe_text
from tuillm.tui.jobs import JobFailed, run_job
from tuillm.tui.panes.chat_dialogs import ChatDialogs
from tuillm.tui.panes.chat_memory import ChatMemory
from tuillm.tui.panes.chat_model import DEMO, LOAD_JOB, ModelReady, Turn, load_checked, model_label
from tuillm.tui.panes.chat_stream import BackendEvent, ReplyStream, TextWaiting, TurnDone, TurnFailed, turn_outcome
from tuillm.tui.session import Session
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatColumn, ChatPrompt
from tuillm.tui.widgets.status_line import StatusLine

LIVE_STATS_S = 0.5  # how often the status line's tokens/s is refreshed while a reply streams
BUSY = "a reply is on its way: Esc stops it"


class ChatPane(ChatMemory, ChatDialogs, Horizontal):
    HELP_TITLE = "Chat pane"
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="chat.stop", tooltip="Stop the reply, or cancel editing"),
        Binding("ctrl+n", "new_chat", "New", id="chat.new", tooltip="Start a new chat"),
        # Not in the footer (80 columns); F1 lists them.
        Binding("ctrl+r", "regenerate", "Regenerate", show=False, id="chat.regenerate",
                tooltip="Answer the last message again"),
        Binding("ctrl+g", "edit_last", "Edit last", show=False, id="chat.edit_last",
                tooltip="Edit the last message and send it again"),
        Binding("ctrl+o", "options", "Options", id="chat.options", tooltip="System prompt and sampling parameters"),
        Binding("ctrl+l", "focus_list", "Chats", show=False, id="chat.focus_list", tooltip="Go to the chat list"),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.stream = ReplyStream(self)
        self.engine: ChatBackend = (session.chat_backend or llama_backend)(self._forward)
        self.store: ChatStore | None = None
        self.chat_id: int | None = None
        # The model the next turn uses: None until the user picks one; the demo model then.
        self.model_path: Path | None = None
        self.model_name = DEMO
        self.model_loading = False
        self.busy = False  # a reply is streaming
        self.editing = False  # the prompt holds the last user message, to be resent
        # Options for a chat not created yet (it is created by its first message).
        self.draft_system = ""
        self.draft_sampling = sampling_defaults(session.config)
        self.last_stats: dict[str, object] | None = None
        self._ticker: Timer | None = None

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        # Messages carry file names, error text and the user's titles: never read them as markup, and never pass
        # a file's or a template's escape sequences to the terminal.
        super().notify(safe_text(message), title=safe_line(title), severity=severity, timeout=timeout,
                       markup=markup)

    # --- layout -------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ChatList(id="chat-list")
        yield ChatColumn(id="chat-main")

    @property
    def column(self) -> ChatColumn:
        return self.query_one(ChatColumn)

    def on_mount(self) -> None:
        try:
            self.store = ChatStore()
        except StoreError as exc:
            # The app stays usable: chats of this session live in memory and are not kept.
            self.notify(f"{exc}; chats will not be saved this session", title="Chat", severity="error",
                        timeout=15)
            self.store = ChatStore(":memory:")
        chats = self._list_chats()
        if chats:
            self.chat_id = chats[0].id  # where the user left off
        self._refresh_list()
        self._refresh_header()
        self.call_after_refresh(self._sync_view)

    def on_unmount(self) -> None:
        self.engine.close()  # stops a running reply, unloads, ends the worker (its final save included)
        if self.store is not None:
            self.store.close()

    def focus_default(self) -> None:
        self.column.prompt.focus()

    def commands(self) -> Iterable[SystemCommand]:
        # call_later runs the async actions on the loop (a palette callback is called, not awaited).
        yield SystemCommand("New chat", "Start a new chat", lambda: self.call_later(self.action_new_chat))
        yield SystemCommand("Regenerate", "Answer the last message again",
                            lambda: self.call_later(self.action_regenerate))
        yield SystemCommand("Edit last message", "Edit the last message and send it again", self.action_edit_last)
        yield SystemCommand("Chat options", "System prompt and sampling parameters", self.action_options)
        yield SystemCommand("Copy last reply", "Copy the last reply to the clipboard (OSC 52)",
                            lambda: self.copy_last(code=False))
        yield SystemCommand("Copy last code block", "Copy the last reply's last code block (OSC 52)",
                            lambda: self.copy_last(code=True))
        yield SystemCommand("Rename chat", "Rename this chat", lambda: self.rename(self.chat_id))
        yield SystemCommand("Delete chat", "Delete this chat", lambda: self.delete(self.chat_id))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            # None: listed (greyed) even when there is nothing to stop, so the key is known before it is needed.
            return True if self.busy or self.editing else None
        return True

    # --- the store ------------------------------------------------------------------------------------------------
    def _list_chats(self) -> list[Chat]:
        assert self.store is not None
        try:
            return self.store.list_chats()
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return []

    def _refresh_list(self) -> None:
        self.query_one(ChatList).show(self._list_chats(), self.chat_id)

    def _refresh_header(self) -> None:
        title = DEFAULT_TITLE
        if self.chat_id is not None and self.store is not None:
            try:
                title = self.store.get_chat(self.chat_id).title
            except StoreError:
                self.chat_id = None
        if self.model_loading:
            model = f"{self.model_name} (loading…)"
        elif self.engine.loaded:
            model = self.model_name
        else:
            model = f"{self.model_name} (loads with the first message)"
        self.column.set_header(f"{title} · {model}")

    def _refresh(self) -> None:
        self._refresh_list()
        self._refresh_header()

    def stored_messages(self) -> list[StoredMessage]:
        if self.chat_id is None or self.store is None:
            return []
        try:
            return self.store.messages(self.chat_id)
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return []

    async def _sync_view(self) -> None:
        # Replies are the model's text: shown without terminal control sequences (stored as they came).
        shown = [replace(m, content=safe_text(m.content)) for m in self.stored_messages()]
        await self.column.show(shown, streaming=self.busy)

    # --- choosing and loading the model ----------------------------------------------------------------------------
    def use_model(self, path: str | Path, name: str | None = None) -> None:
        """Chat with this model from now on, loading it at once (the Models pane's Enter)."""
        self.model_path = Path(path)
        self.model_name = name or model_label(path)
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
        if self.engine.loaded and self.engine.model_path:
            # A refused load leaves the previous model loaded (the checks run first): keep chatting with it.
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

    # --- turns ------------------------------------------------------------------------------------------------------
    async def _start(self, turn: Turn) -> None:
        if self.busy or self.model_loading:
            self.notify(BUSY if self.busy else "the model is still loading", title="Chat", severity="warning")
            return
        if self._model_ready():
            await self._begin(turn)
        else:
            self._load(turn)

    def _conversation(self) -> Conversation:
        assert self.store is not None
        model = str(self.model_path or "")
        if self.chat_id is None:
            conv = Conversation.new(self.engine, self.store, model=model, system_prompt=self.draft_system,
                                    sampling=self.draft_sampling)
            self.chat_id = conv.chat_id
            return conv
        if self.store.get_chat(self.chat_id).model != model:
            self.store.update_chat(self.chat_id, model=model)
        return Conversation(self.engine, self.store, self.chat_id)

    async def _begin(self, turn: Turn) -> None:
        if self.busy:
            return
        self.stream.begin()
        try:
            future = turn(self._conversation())
        except TuillmError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return
        self.busy = True
        self.editing = False
        self.refresh_bindings()
        self.column.stop_editing()
        self.column.view.follow_from_now()  # a sent message is always seen, and so is its reply
        self._refresh()
        await self._sync_view()
        self.stream.bubble = self.column.streaming_bubble()
        future.add_done_callback(lambda f: self.post_message(turn_outcome(f)))

    async def _end_turn(self) -> None:
        await self.stream.end()  # the full update below draws the final text
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.busy = False
        self.refresh_bindings()

    async def on_turn_done(self, event: TurnDone) -> None:
        await self._end_turn()
        stats = event.done.stats
        self.last_stats = stats.to_json()
        self._set_status(f"{self.model_name} · ctx {stats.context_used}/{stats.n_ctx} · "
                         f"{stats.tokens_per_s:.1f} tok/s")
        await self._sync_view()
        self._refresh()

    async def on_turn_failed(self, event: TurnFailed) -> None:
        await self._end_turn()
        self.notify(event.error, title="Reply failed", severity="error", timeout=10)
        await self._sync_view()
        self._refresh()

    def on_backend_event(self, message: BackendEvent) -> None:
        match message.event:
            case ReplyStarted(prompt_tokens=prompt_tokens):
                self._set_status(f"{self.model_name} · ctx {prompt_tokens}/{self.engine.n_ctx} · generating…")
                self._ticker = self.set_interval(LIVE_STATS_S, self._live_stats)
            case ContextTrimmed(message=text):
                self.notify(text, title="Chat", severity="warning")
            case Log(message=text, level=level) if level != "info":
                self.notify(text, title="Model", severity="warning" if level == "warning" else "error")
            case _:
                pass  # ModelReady / TurnDone report loads and replies, with what the user asked for

    def _live_stats(self) -> None:
        rate = self.stream.rate()
        if rate is not None:
            self._set_status(f"{self.model_name} · ctx …/{self.engine.n_ctx} · {rate:.1f} tok/s")

    def _set_status(self, text: str | None) -> None:
        for status in self.app.query(StatusLine):
            status.set_model(text)

    def _forward(self, event: ChatEvent) -> None:
        # Called on the backend's thread: post_message is thread-safe and does not wait for the event loop.
        if isinstance(event, Token):
            self.stream.add(event)
        else:
            self.post_message(BackendEvent(event))

    async def on_text_waiting(self, _event: TextWaiting) -> None:
        await self.stream.draw()

    # --- actions ----------------------------------------------------------------------------------------------------
    async def on_chat_prompt_submitted(self, event: ChatPrompt.Submitted) -> None:
        text = event.text
        if not text.strip():
            return
        if self.editing:
            await self._start(lambda conv: conv.edit_and_resend(text))
        else:
            await self._start(lambda conv: conv.send(text))

    def action_stop(self) -> None:
        if self.busy:
            self.engine.stop()
        elif self.editing:
            self.editing = False
            self.column.stop_editing()
            self.refresh_bindings()

    async def action_regenerate(self) -> None:
        if self.chat_id is None or not any(m.role == "user" for m in self.stored_messages()):
            self.notify("no message to answer again yet", title="Chat", severity="warning")
            return
        await self._start(lambda conv: conv.regenerate())

    def action_edit_last(self) -> None:
        if self.busy:
            self.notify(BUSY, title="Chat", severity="warning")
            return
        users = [m for m in self.stored_messages() if m.role == "user"]
        if not users:
            self.notify("no message to edit yet", title="Chat", severity="warning")
            return
        self.column.start_editing(users[-1].content)
        self.editing = True
        self.refresh_bindings()

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify(BUSY, title="Chat", severity="warning")
            return
        self.chat_id = None
        self.draft_system, self.draft_sampling = "", Sampling(**self.draft_sampling.to_json())
        self.action_stop()  # leaves editing
        await self._sync_view()
        self._refresh()
        self.focus_default()

    def action_focus_list(self) -> None:
        self.query_one(ChatList).focus()

    async def on_chat_list_opened(self, event: ChatList.Opened) -> None:
        if self.busy:
            self.notify(f"{BUSY} first", title="Chat", severity="warning")
            return
        self.chat_id = event.chat_id
        self.action_stop()
        await self._sync_view()
        self._refresh_header()
        self.focus_default()

    async def on_chat_list_new_requested(self, _event: ChatList.NewRequested) -> None:
        await self.action_new_chat()
