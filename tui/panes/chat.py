"""The Chat pane: the chat list, the streamed conversation and the prompt, over one ``ChatSession`` for the app.

The session owns one ``Llama`` on its own worker thread; its events are posted to this pane as messages (from that
thread), so the event loop only draws. Each turn goes through ``core.chat_conversation.Conversation``, the same
glue the CLI uses, which saves the reply while it streams. The model is loaded lazily: on the first message (the
demo model unless one was chosen in the Models pane), so the app starts without touching llama.cpp.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.timer import Timer
from textual.widgets import Label, Markdown, OptionList
from textual.widgets.markdown import MarkdownStream
from textual.widgets.option_list import Option

from tuillm.core.chat.conversation import DEFAULT_TITLE, Conversation
from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import ContextTrimmed, ModelLoaded, ModelUnloaded, ReplyDone, ReplyStarted, Token
from tuillm.core.chat.store import ChatStore, StoreError
from tuillm.core.errors import TuillmError, error_text
from tuillm.core.events import Log
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.settings import load_options_for, sampling_defaults
from tuillm.tui.screens.chat_options import ChatOptions, ChatOptionsScreen
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.rename import RenameScreen
from tuillm.tui.session import Session
from tuillm.tui.widgets.chat_messages import ChatPrompt, ChatView, MessageBubble, last_code_block

LIST_TITLE_CHARS = 22
LIVE_STATS_S = 0.5  # how often the status line's tokens/s is refreshed while a reply streams
# Streamed text is drawn at most this often: the first token at once, then what came in the meantime in one
# Markdown append. Drawing per token kept the event loop busy and its GIL use slowed the decoding thread.
DRAW_INTERVAL_S = 0.1
PLACEHOLDER = "Message · Enter sends · Ctrl+J new line"
Turn = Callable[[Conversation], "Future[ReplyDone]"]



def _model_label(path: str | Path) -> str:
    from tuillm.core.paths import demo_model_path

    demo = demo_model_path()
    return "demo" if demo is not None and Path(path) == demo else Path(path).name


class ChatList(OptionList):
    """The saved chats, newest first: Enter opens one."""

    HELP_TITLE = "Chat list"
    BINDINGS = [
        Binding("n", "new_chat", "New chat", show=False, id="chat.list_new", tooltip="Start a new chat"),
        Binding("r", "rename", "Rename", id="chat.rename", tooltip="Rename the highlighted chat"),
        Binding("delete,d", "delete", "Delete", id="chat.delete", tooltip="Delete the highlighted chat"),
    ]

    def highlighted_chat(self) -> int | None:
        if self.highlighted is None:
            return None
        option_id = self.get_option_at_index(self.highlighted).id
        return int(option_id) if option_id else None

    def action_new_chat(self) -> None:
        self.post_message(ChatPane.ListAction("new", None))

    def action_rename(self) -> None:
        self.post_message(ChatPane.ListAction("rename", self.highlighted_chat()))

    def action_delete(self) -> None:
        self.post_message(ChatPane.ListAction("delete", self.highlighted_chat()))


class ChatPane(Horizontal):
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

    class EngineEvent(Message):
        """An event of the chat session, posted from its worker thread."""

        def __init__(self, event: Any) -> None:
            super().__init__()
            self.event = event

    class TokensReady(Message):
        """Streamed text is waiting in the pane's buffer (posted once per batch, from the worker thread)."""

    class LoadFinished(Message):
        def __init__(self, future: Future[ModelLoaded], then: Turn | None) -> None:
            super().__init__()
            self.future = future
            self.then = then

    class TurnEnded(Message):
        def __init__(self, future: Future[ReplyDone]) -> None:
            super().__init__()
            self.future = future

    class ListAction(Message):
        def __init__(self, action: str, chat_id: int | None) -> None:
            super().__init__()
            self.action = action
            self.chat_id = chat_id

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.engine = ChatSession(self._forward)
        self.store: ChatStore | None = None
        self.chat_id: int | None = None
        # The model the next turn uses: None until the user picks one; the demo model then.
        self.model_path: Path | None = None
        self.model_name = "demo"
        self.model_loading = False
        self.busy = False  # a reply is streaming
        self.editing = False  # the prompt holds the last user message, to be resent
        # Options for a chat not created yet (it is created by its first message).
        self.draft_system = ""
        self.draft_sampling = sampling_defaults(session.config)
        self.last_stats: dict[str, Any] | None = None
        self._reply_bubble: MessageBubble | None = None  # the bubble the streaming reply is drawn into
        self._stream: MarkdownStream | None = None
        self._tokens = 0  # of the streaming reply, counted on the worker thread
        self._first_token_at = 0.0
        self._ticker: Timer | None = None
        self._token_lock = threading.Lock()
        self._token_buffer: list[str] = []
        self._draw_pending = False  # a TokensReady is posted or a draw is scheduled

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        # Messages carry file names, error text and the user's titles: never read them as markup.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # --- layout -------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ChatList(id="chat-list")
        with Vertical(id="chat-main"):
            yield Label("", id="chat-header", markup=False)
            yield ChatView(id="chat-view")
            yield ChatPrompt(id="chat-prompt", placeholder=PLACEHOLDER, soft_wrap=True)

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
        self.query_one(ChatPrompt).focus()

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
        yield SystemCommand("Rename chat", "Rename this chat", lambda: self._rename(self.chat_id))
        yield SystemCommand("Delete chat", "Delete this chat", lambda: self._delete(self.chat_id))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            # None: listed (greyed) even when there is nothing to stop, so the key is known before it is needed.
            return True if self.busy or self.editing else None
        return True

    # --- the store ------------------------------------------------------------------------------------------------
    def _list_chats(self) -> list[Any]:
        assert self.store is not None
        try:
            return self.store.list_chats()
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return []

    def _refresh_list(self) -> None:
        chat_list = self.query_one(ChatList)
        chats = self._list_chats()
        chat_list.clear_options()
        # Text, not str: a title is the user's words, not markup.
        chat_list.add_options([Option(Text(_short(chat.title)), id=str(chat.id)) for chat in chats])
        for index, chat in enumerate(chats):
            if chat.id == self.chat_id:
                chat_list.highlighted = index

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
        self.query_one("#chat-header", Label).update(f"{title} · {model}")

    def _stored_messages(self) -> list[Any]:
        if self.chat_id is None or self.store is None:
            return []
        try:
            return self.store.messages(self.chat_id)
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return []

    async def _sync_view(self) -> None:
        """Make the bubbles match the stored messages: keep the common start, update changed text, remove what
        was deleted (regenerate, edit), mount what is new."""
        view = self.query_one(ChatView)
        stored = self._stored_messages()
        bubbles = view.bubbles
        keep = 0
        while keep < min(len(stored), len(bubbles)) and bubbles[keep].message_id == stored[keep].id:
            keep += 1
        if bubbles[keep:]:
            await view.remove_children(bubbles[keep:])
        for bubble, message in zip(bubbles[:keep], stored, strict=False):
            if (bubble.content, bubble.complete, bubble.stats) != (message.content, message.complete,
                                                                   message.stats) or bubble.streaming:
                await bubble.set_content(message.content, complete=message.complete, stats=message.stats)
        new = [MessageBubble(m.role, m.content, message_id=m.id, complete=m.complete, stats=m.stats,
                             streaming=self.busy and not m.complete and m is stored[-1])
               for m in stored[keep:]]
        if new:
            await view.mount_all(new)
        view.follow()

    # --- choosing and loading the model ----------------------------------------------------------------------------
    def use_model(self, path: str | Path, name: str | None = None) -> None:
        """Chat with this model from now on, loading it at once (the Models pane's Enter)."""
        self.model_path = Path(path)
        self.model_name = name or _model_label(path)
        if self.busy:
            self.engine.stop()
        self._load(None)

    def _wanted_model(self) -> Path:
        if self.model_path is None:
            from tuillm.core.models.catalog import resolve_model

            self.model_path = resolve_model("demo", self.session.config)
            self.model_name = "demo"
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
        self._checked_load(path, load_options_for(self.session.config, path), then)

    @work(thread=True, group="chat-load", exit_on_error=False)
    def _checked_load(self, path: Path, options: LoadOptions, then: Turn | None) -> None:
        # The Models pane's fit marker, judged against the same available RAM: what it marks "too big" is refused
        # here, before llama.cpp is touched (the engine checks again against the live figure).
        from tuillm.core.models.memory import load_refusal
        from tuillm.core.models.metadata import read_info

        future: Future[ModelLoaded]
        try:
            refusal = load_refusal(read_info(path), options, self.session.available_ram)
        except Exception:  # a bad file (or anything else): the engine's load reports it, this only pre-checks
            refusal = None
        if refusal is not None:
            future = Future()
            future.set_exception(TuillmError(refusal))
            self.post_message(self.LoadFinished(future, then))
            return
        future = self.engine.load(path, options)
        future.add_done_callback(lambda f: self.post_message(self.LoadFinished(f, then)))

    async def on_chat_pane_load_finished(self, event: LoadFinished) -> None:
        self.model_loading = False
        exc = event.future.exception()
        if exc is not None:
            self.notify(error_text(exc), title=f"Could not load {self.model_name}", severity="error",
                        timeout=15)
            if self.engine.loaded and self.engine.model_path:
                # A refused load leaves the previous model loaded (the checks run first): keep chatting with it.
                self.model_path = Path(self.engine.model_path)
                self.model_name = _model_label(self.model_path)
                self._set_status(f"{self.model_name} · ctx {self.engine.context_used}/{self.engine.n_ctx}")
            else:
                self._set_status(None)
            self._refresh_header()
            return
        loaded = event.future.result()
        self._set_status(f"{self.model_name} · ctx 0/{loaded.n_ctx}")
        self._refresh_header()
        if event.then is not None:
            await self._begin(event.then)

    def _model_ready(self) -> bool:
        return self.engine.loaded and self.model_path is not None and self.engine.model_path == str(self.model_path)

    # --- turns ------------------------------------------------------------------------------------------------------
    async def _start(self, turn: Turn) -> None:
        if self.busy or self.model_loading:
            self.notify("a reply is on its way: Esc stops it" if self.busy else "the model is still loading",
                        title="Chat", severity="warning")
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
        self._tokens = 0
        try:
            future = turn(self._conversation())
        except TuillmError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return
        self.busy = True
        self.refresh_bindings()
        if self.editing:
            self.editing = False
            self.query_one(ChatPrompt).border_title = None
        self.query_one(ChatPrompt).clear()
        self._refresh_list()
        self._refresh_header()
        await self._sync_view()
        bubbles = self.query_one(ChatView).bubbles
        if bubbles and bubbles[-1].role == "assistant" and bubbles[-1].streaming:
            self._reply_bubble = bubbles[-1]
        future.add_done_callback(lambda f: self.post_message(self.TurnEnded(f)))

    async def on_chat_pane_turn_ended(self, event: TurnEnded) -> None:
        self.take_streamed_text()  # the full update below draws the final text
        with self._token_lock:
            self._draw_pending = False
        self._reply_bubble = None
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.stop()
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.busy = False
        self.refresh_bindings()
        exc = event.future.exception()
        if exc is not None:
            self.notify(error_text(exc), title="Reply failed", severity="error", timeout=10)
        else:
            stats = event.future.result().stats
            self.last_stats = stats.to_json()
            self._set_status(f"{self.model_name} · ctx {stats.context_used}/{stats.n_ctx} · "
                             f"{stats.tokens_per_s:.1f} tok/s")
        await self._sync_view()
        self._refresh_list()
        self._refresh_header()

    async def on_chat_pane_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, ReplyStarted):
            self._set_status(f"{self.model_name} · ctx {event.prompt_tokens}/{self.engine.n_ctx} · generating…")
            self._ticker = self.set_interval(LIVE_STATS_S, self._live_stats)
        elif isinstance(event, ContextTrimmed):
            self.notify(event.message, title="Chat", severity="warning")
        elif isinstance(event, Log) and event.level != "info":
            self.notify(event.message, title="Model", severity="warning" if event.level == "warning" else "error")
        elif isinstance(event, ModelUnloaded | ModelLoaded):
            pass  # LoadFinished reports the load, with what the user asked for

    def _live_stats(self) -> None:
        if self._tokens > 1:
            rate = (self._tokens - 1) / max(time.perf_counter() - self._first_token_at, 1e-6)
            self._set_status(f"{self.model_name} · ctx …/{self.engine.n_ctx} · {rate:.1f} tok/s")

    def _set_status(self, text: str | None) -> None:
        from tuillm.tui.widgets.status_line import StatusLine

        for status in self.app.query(StatusLine):
            status.set_model(text)

    def _forward(self, event: Any) -> None:
        # Called on the session's worker thread: post_message is thread-safe and does not wait for the loop.
        if not isinstance(event, Token):
            self.post_message(self.EngineEvent(event))
            return
        self._tokens += 1
        if self._tokens == 1:
            self._first_token_at = time.perf_counter()
        if not event.text:
            return
        with self._token_lock:
            self._token_buffer.append(event.text)
            post, self._draw_pending = not self._draw_pending, True
        if post:
            self.post_message(self.TokensReady())

    def take_streamed_text(self) -> str:
        """The text streamed since the last draw; when there is none, the next token asks for a draw at once."""
        with self._token_lock:
            text = "".join(self._token_buffer)
            self._token_buffer.clear()
            if not text:
                self._draw_pending = False
        return text

    async def on_chat_pane_tokens_ready(self, _event: TokensReady) -> None:
        await self._draw_streamed_text()

    async def _draw_streamed_text(self) -> None:
        text = self.take_streamed_text()
        if text:
            if self._stream is None and self._reply_bubble is not None:
                # Started by the first text, never empty: stopping a stream whose task has not run yet raises
                # CancelledError in the caller (which would end this pane's message loop).
                self._stream = Markdown.get_stream(self._reply_bubble.markdown)
            if self._stream is not None:
                await self._stream.write(text)
            self.set_timer(DRAW_INTERVAL_S, self._draw_streamed_text)

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
            prompt = self.query_one(ChatPrompt)
            prompt.clear()
            prompt.border_title = None
            self.refresh_bindings()

    async def action_regenerate(self) -> None:
        if self.chat_id is None or not any(m.role == "user" for m in self._stored_messages()):
            self.notify("no message to answer again yet", title="Chat", severity="warning")
            return
        await self._start(lambda conv: conv.regenerate())

    def action_edit_last(self) -> None:
        if self.busy:
            self.notify("a reply is on its way: Esc stops it", title="Chat", severity="warning")
            return
        users = [m for m in self._stored_messages() if m.role == "user"]
        if not users:
            self.notify("no message to edit yet", title="Chat", severity="warning")
            return
        prompt = self.query_one(ChatPrompt)
        prompt.text = users[-1].content
        prompt.move_cursor(prompt.document.end)
        prompt.border_title = "Editing the last message · Enter resends · Esc cancels"
        self.editing = True
        self.refresh_bindings()
        prompt.focus()

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify("a reply is on its way: Esc stops it", title="Chat", severity="warning")
            return
        self.chat_id = None
        self.draft_system, self.draft_sampling = "", Sampling(**self.draft_sampling.to_json())
        self.action_stop()  # leaves editing
        await self._sync_view()
        self._refresh_list()
        self._refresh_header()
        self.focus_default()

    def action_focus_list(self) -> None:
        self.query_one(ChatList).focus()

    def action_options(self) -> None:
        system, sampling = self.draft_system, self.draft_sampling
        if self.chat_id is not None and self.store is not None:
            try:
                conv = Conversation(self.engine, self.store, self.chat_id)
                system, sampling = conv.chat.system_prompt, conv.sampling
            except (StoreError, TypeError) as exc:  # TypeError: params written by another version
                self.notify(error_text(exc), title="Chat", severity="error")
                return

        def saved(options: ChatOptions | None) -> None:
            if options is None:
                return
            if self.chat_id is None or self.store is None:
                self.draft_system, self.draft_sampling = options.system_prompt, options.sampling
            else:
                try:
                    conv = Conversation(self.engine, self.store, self.chat_id)
                    conv.set_system_prompt(options.system_prompt)
                    conv.set_sampling(options.sampling)
                except StoreError as exc:
                    self.notify(str(exc), title="Chat", severity="error")
                    return
            self.notify("options saved for this chat", title="Chat")

        self.app.push_screen(ChatOptionsScreen(system, sampling), saved)

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.busy:
            self.notify("a reply is on its way: Esc stops it first", title="Chat", severity="warning")
            return
        if event.option.id is None:
            return
        self.chat_id = int(event.option.id)
        self.action_stop()
        await self._sync_view()
        self._refresh_header()
        self.focus_default()

    async def on_chat_pane_list_action(self, event: ListAction) -> None:
        if event.action == "new":
            await self.action_new_chat()
        elif event.action == "rename":
            self._rename(event.chat_id)
        elif event.action == "delete":
            self._delete(event.chat_id)

    def _rename(self, chat_id: int | None) -> None:
        if chat_id is None or self.store is None:
            return
        store = self.store

        def renamed(title: str | None) -> None:
            if title:
                try:
                    store.rename_chat(chat_id, title)
                except StoreError as exc:
                    self.notify(str(exc), title="Chat", severity="error")
                self._refresh_list()
                self._refresh_header()

        title = self._title_of(chat_id)
        if title is not None:
            self.app.push_screen(RenameScreen(title), renamed)

    def _delete(self, chat_id: int | None) -> None:
        if chat_id is None or self.store is None:
            return
        if self.busy and chat_id == self.chat_id:
            self.notify("a reply is on its way: Esc stops it first", title="Chat", severity="warning")
            return
        store = self.store

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                store.delete_chat(chat_id)
            except StoreError as exc:
                self.notify(str(exc), title="Chat", severity="error")
            if chat_id == self.chat_id:
                self.chat_id = None
                await self._sync_view()
            self._refresh_list()
            self._refresh_header()

        title = self._title_of(chat_id)
        if title is not None:
            self.app.push_screen(ConfirmScreen(f"Delete the chat “{title}”?"), answered)

    def _title_of(self, chat_id: int) -> str | None:
        """The chat's title, or None (and a notification) when the store cannot say."""
        assert self.store is not None
        try:
            return self.store.get_chat(chat_id).title
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return None

    def on_chat_view_copy_requested(self, event: ChatView.CopyRequested) -> None:
        self._copy(event.bubble.content, event.code)

    def copy_last(self, code: bool) -> None:
        replies = [m for m in self._stored_messages() if m.role == "assistant"]
        if not replies:
            self.notify("no reply to copy yet", title="Copy", severity="warning")
            return
        self._copy(replies[-1].content, code)

    def _copy(self, text: str, code: bool) -> None:
        if code:
            block = last_code_block(text)
            if block is None:
                self.notify("that message has no code block", title="Copy", severity="warning")
                return
            text = block
        self.app.copy_to_clipboard(text)
        what = "code block" if code else "message"
        self.notify(f"copied the {what} ({len(text)} characters)", title="Copy")


def _short(title: str) -> str:
    return title if len(title) <= LIST_TITLE_CHARS else title[: LIST_TITLE_CHARS - 1] + "…"
