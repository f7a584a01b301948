"""The Chat pane: the chat list, the streamed conversation and the prompt, over one chat backend for the app.

The backend (``core.chat.backend.ChatBackend``; llama.cpp's ``ChatSession`` unless the Session gives another
factory) owns the model on its own thread; its events are posted to this pane as messages from that thread, so
the event loop only draws. Each turn goes through ``core.chat.conversation.Conversation``, the same glue the CLI
uses, which saves the reply while it streams. Its parts: ``widgets.chat_sidebar`` (the saved chats and their filter),
``widgets.chat_messages`` (the open chat's column), ``chat_stream`` (tokens to the screen), ``chat_model`` (which
model, and loading it), ``chat_drafts`` (unsent text kept per chat), ``chat_memory`` (the memory guard's
offer to unload or reload smaller), ``chat_search`` (the filter and full-text search), ``chat_branches``
(alternatives, forks, edits as branches), ``chat_attach`` (``@`` files and import), ``chat_layout`` (the list
shown or hidden by width).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal
from textual.message import Message
from textual.notifications import SeverityLevel

from tuillm.core.chat.backend import ChatBackend, llama_backend
from tuillm.core.chat.conversation import DEFAULT_TITLE, Conversation
from tuillm.core.chat.events import ChatEvent, ContextTrimmed, ReplyStarted, Token
from tuillm.core.chat.store import Chat, ChatStore, StoreError
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.errors import TuillmError
from tuillm.core.events import Log
from tuillm.core.llama.options import Sampling
from tuillm.core.settings import sampling_defaults
from tuillm.core.text import safe_line, safe_text
from tuillm.tui import gc_policy, keymap
from tuillm.tui.panes.chat_attach import ChatAttach
from tuillm.tui.panes.chat_branches import VIEW_ACTIONS, ChatBranches
from tuillm.tui.panes.chat_dialogs import ChatDialogs
from tuillm.tui.panes.chat_drafts import ChatDrafts
from tuillm.tui.panes.chat_layout import ChatLayout, fit_model_header
from tuillm.tui.panes.chat_memory import ChatMemory
from tuillm.tui.panes.chat_model import DEMO, ChatModels, Turn, model_label
from tuillm.tui.panes.chat_search import ChatSearch
from tuillm.tui.panes.chat_stream import BackendEvent, ReplyStream, TextWaiting, TurnDone, TurnFailed, turn_outcome
from tuillm.tui.session import Session
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatColumn
from tuillm.tui.widgets.chat_prompt import ChatPrompt
from tuillm.tui.widgets.chat_sidebar import ChatSidebar

LIVE_STATS_S = 0.5  # how often the status line's tokens/s is refreshed while a reply streams
BUSY = "a reply is on its way: Esc stops it"


class ChatPane(ChatLayout, ChatDrafts, ChatModels, ChatMemory, ChatDialogs, ChatAttach, ChatSearch, ChatBranches,
               Horizontal):
    HELP_TITLE = "Chat pane"
    BINDINGS = keymap.CHAT

    class ModelStatus(Message):
        """The chat's model and what it is doing, for the status line (None: no model)."""

        def __init__(self, text: str | None) -> None:
            super().__init__()
            self.text = text

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.stream = ReplyStream(self, with_draw=self._live_stats)
        self._engine: ChatBackend | None = None  # made on first use: see ``engine``
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
        self._stats_shown_at = 0.0  # when the status line's tokens/s was last refreshed (time.monotonic)

    @property
    def engine(self) -> ChatBackend:
        """The chat backend, made after the first frame (``on_mount``) or when first needed: its module
        (llama.cpp's engine, the template sandbox) is not paid for before the app's first frame."""
        if self._engine is None:
            self._engine = self.new_engine()
        return self._engine

    def new_engine(self) -> ChatBackend:
        """A fresh backend (the memory guard's "unload" replaces the current one with it)."""
        self._engine = (self.session.chat_backend or llama_backend)(self._forward)
        return self._engine

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        # Messages carry file names, error text and the user's titles: never read them as markup, and never pass
        # a file's or a template's escape sequences to the terminal.
        super().notify(safe_text(message), title=safe_line(title), severity=severity, timeout=timeout,
                       markup=markup)

    # --- layout -------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ChatSidebar(id="chat-sidebar")  # the chat list under its filter
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
        self._switch_to(chats[0].id if chats else None)  # where the user left off
        self.call_after_refresh(self._sync_view)
        # The backend right after the first frame, on the event loop: a worker asking for it first would race.
        self.call_after_refresh(lambda: self.engine)
        self.session.chat_use.provide(self.files_in_use, self.file_deleted)  # the Models pane's deletes

    def on_unmount(self) -> None:
        if self._engine is not None:  # stops a running reply, unloads, ends the worker (its final save included)
            self._engine.close()
        self.save_draft()
        if self.store is not None:
            self.store.close()

    def focus_default(self) -> None:
        # At once (not Widget.focus()'s call_later): keys typed before the app was up, or in the burst that showed
        # the pane, come next in the queue and must reach the prompt (tui.first_frame).
        self.screen.set_focus(self.column.prompt)

    def work_in_progress(self) -> list[str]:
        return []  # a reply cut short is kept as far as it got: nothing to ask about

    def commands(self) -> Iterable[SystemCommand]:
        # call_later runs the async actions on the loop (a palette callback is called, not awaited).
        yield SystemCommand("New chat", "Start a new chat", lambda: self.call_later(self.action_new_chat))
        yield SystemCommand("Regenerate", "Answer the last message again",
                            lambda: self.call_later(self.action_regenerate))
        yield SystemCommand("Edit last message", "Edit the last message and send it again", self.action_edit_last)
        yield from self.branch_commands()  # fork, alternatives, edit a message
        yield SystemCommand("Search chats", "Find words in the messages of every chat", self.action_search)
        yield SystemCommand("Chat options", "System prompt and sampling parameters", self.action_options)
        yield from self.transfer_commands()  # import, export
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
        if action in VIEW_ACTIONS:
            return self.branch_action_allowed(action)
        return True

    # --- the store ------------------------------------------------------------------------------------------------
    def _list_chats(self) -> list[Chat]:
        assert self.store is not None
        try:
            return self.store.search(self.query_one(ChatSidebar).filter)  # every chat when nothing is typed
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return []

    def _refresh_list(self) -> None:
        self.query_one(ChatSidebar).show(self._list_chats(), self.chat_id)

    def _refresh_header(self) -> None:
        title = DEFAULT_TITLE
        if self.chat_id is not None and self.store is not None:
            try:
                title = self.store.get_chat(self.chat_id).title
            except StoreError:
                self.chat_id = None
        self.column.set_header(fit_model_header(safe_line(title), self.header_model(), self.header_width()))

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
        # As stored: the view converts (safe_text, model_label) only the messages it mounts, so a long chat's
        # sync costs what changed, not its length.
        await self.column.show(self.stored_messages(), streaming=self.busy, label=model_label)

    # --- turns ------------------------------------------------------------------------------------------------------
    async def _start(self, turn: Turn) -> None:
        if self.busy or self.model_loading:
            self.notify(BUSY if self.busy else "the model is still loading", title="Chat", severity="warning")
            return
        if self.model_gone():
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
            self.chat_id, self._new_chat_draft = conv.chat_id, ""
            self.record_model(conv.chat_id)  # with its adapter and load settings
            return conv
        kept = self.store.get_chat(self.chat_id)
        if not kept.model or not kept.load:  # a chat kept before chats kept their model (or its load settings)
            self.record_model(self.chat_id)
        return Conversation(self.engine, self.store, self.chat_id)

    async def _begin(self, turn: Turn) -> None:
        if self.busy:
            return
        self.stream.begin()
        try:
            future = turn.run(self._conversation())
        except TuillmError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return
        self.busy = True
        # A blinking cursor repaints the screen twice a second: CPU the decoding threads would lose.
        self.column.prompt.cursor_blink = False
        was_editing, self.editing = self.editing, False
        self.refresh_bindings()
        if turn.typed or was_editing:
            self.after_sent(was_editing, turn.prompt)
        self.column.view.follow_from_now()  # a sent message is always seen, and so is its reply
        self._refresh()
        await self._sync_view()
        await self.stream.draw_into(self.column.streaming_bubble())
        future.add_done_callback(lambda f: self.post_message(turn_outcome(f)))

    async def _end_turn(self) -> None:
        self.stream.end()  # the full update below draws the final text
        self.column.prompt.cursor_blink = True
        self.call_after_refresh(gc_policy.quiet)
        self.busy = False
        self.refresh_bindings()

    async def on_turn_done(self, event: TurnDone) -> None:
        await self._end_turn()
        stats = event.done.stats
        self.last_stats = stats.to_json()
        if not self.model_loading:  # another model was picked meanwhile: its "loading…" stays until it is ready
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
                self._stats_shown_at = time.monotonic()
            case ContextTrimmed(message=text):
                self.notify(text, title="Chat", severity="warning")
            case Log(message=text, level=level) if level != "info":
                self.notify(text, title="Model", severity="warning" if level == "warning" else "error")
            case _:
                pass  # ModelReady / TurnDone report loads and replies, with what the user asked for

    def _live_stats(self) -> None:
        """At each draw: the status line's tokens/s, at most every LIVE_STATS_S, posted before the draw's text so
        that the screen's next repaint shows both (each repaint costs the decoding threads ~2 ms of CPU)."""
        now = time.monotonic()
        rate = self.stream.rate()
        if rate is not None and now - self._stats_shown_at >= LIVE_STATS_S and not self.model_loading:
            self._stats_shown_at = now
            self._set_status(f"{self.model_name} · ctx …/{self.engine.n_ctx} · {rate:.1f} tok/s")

    def _set_status(self, text: str | None) -> None:
        # To the app, which holds the status line: a query for it would walk every widget (~7 ms, twice a second
        # while a reply streams), and bubbling up would wake every container on the way.
        self.app.post_message(self.ModelStatus(text))

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
        sent = await self.with_attachments(text)  # the @path files attached (chat_attach); None: nothing is sent
        if sent is None:
            return
        text = sent
        if self.editing:
            await self._start(Turn(self.edit_turn(text), typed=True, prompt=event.text))
        else:
            await self._start(Turn(lambda conv: conv.send(text), typed=True, prompt=event.text))

    def action_stop(self) -> None:
        if self.busy:
            self.engine.stop()
        elif self.editing:
            self.editing = False
            self.column.stop_editing(self.draft)
            self.refresh_bindings()

    async def action_regenerate(self) -> None:
        if self.chat_id is None or not any(m.role == "user" for m in self.stored_messages()):
            self.notify("no message to answer again yet", title="Chat", severity="warning")
            return
        chosen = self.selected_id()  # a message selected in the messages view, else the last one
        await self._start(Turn(lambda conv: conv.regenerate(message=chosen)))

    def action_edit_last(self) -> None:
        if self.busy or self.model_loading:  # (a message waiting for the model would be sent with the edit open)
            self.notify(BUSY if self.busy else "the model is still loading", title="Chat", severity="warning")
            return
        users = [m for m in self.stored_messages() if m.role == "user"]
        if not users:
            self.notify("no message to edit yet", title="Chat", severity="warning")
            return
        self.start_edit(users[-1])

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify(BUSY, title="Chat", severity="warning")
            return
        self._switch_to(None)
        await self._sync_view()
        self.focus_default()

    def _switch_to(self, chat_id: int | None) -> None:
        """Open ``chat_id`` (None: a new chat): the draft of the one left is kept, the one opened brings its own
        draft and its model (the view is synced by the caller)."""
        self.action_stop()  # leaves editing
        self.save_draft()
        self.chat_id = chat_id
        if chat_id is None:
            self.draft_system, self.draft_sampling = "", Sampling(**self.draft_sampling.to_json())
        self.show_draft()
        self.adopt_chat_model()
        self.show_chat_status()  # this chat's context use, not the one left's
        self._refresh()

    def chat_with(self, path: Path, name: str) -> None:
        """"Chat with this model" (the Models pane's Enter, the Train pane's Chat): a new chat with it, except when
        the open chat's model file is gone: then this chat goes on with it (recorded, and said)."""
        if self.busy:
            self.engine.stop()
        if not (self.model_missing and self.chat_id is not None):
            self._switch_to(None)
            self.call_after_refresh(self._sync_view)
        self.use_model(path)  # named by its file, as the chat names it when reopened

    async def on_chat_list_opened(self, event: ChatList.Opened) -> None:
        if self.busy:
            self.notify(f"{BUSY} first", title="Chat", severity="warning")
            return
        self._switch_to(event.chat_id)
        await self._sync_view()
        self.focus_default()

    async def on_chat_list_new_requested(self, _event: ChatList.NewRequested) -> None:
        await self.action_new_chat()
