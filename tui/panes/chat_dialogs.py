"""The Chat pane's dialogs and clipboard: chat options, rename, delete, copy (a mixin of ``ChatPane``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.app import App

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.store import ChatStore, StoreError
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.llama.options import Sampling
from tuillm.tui.screens.chat_options import ChatOptions, ChatOptionsScreen
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.rename import RenameScreen
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatView, last_code_block


class ChatDialogs:
    # What these flows use of the pane (ChatPane and its Widget base define them). A plain class, not a Widget:
    # a second Widget base would take the place of Horizontal's layout in the pane's default CSS.
    app: App[int]
    notify: Callable[..., None]
    store: ChatStore | None
    chat_id: int | None
    busy: bool
    engine: ChatBackend
    draft_system: str
    draft_sampling: Sampling
    stored_messages: Callable[[], list[StoredMessage]]
    _refresh: Callable[[], None]
    adopt_chat_model: Callable[[], None]
    action_stop: Callable[[], None]
    _sync_view: Callable[[], Awaitable[None]]

    # --- options --------------------------------------------------------------------------------------------------
    def action_options(self) -> None:
        system, sampling = self.draft_system, self.draft_sampling
        if self.chat_id is not None and self.store is not None:
            try:
                conv = Conversation(self.engine, self.store, self.chat_id)
                system, sampling = conv.chat.system_prompt, conv.sampling
            except StoreError as exc:
                self.notify(str(exc), title="Chat", severity="error")
                return
        self.app.push_screen(ChatOptionsScreen(system, sampling), self._options_saved)

    def _options_saved(self, options: ChatOptions | None) -> None:
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

    # --- rename and delete ----------------------------------------------------------------------------------------
    def on_chat_list_rename_requested(self, event: ChatList.RenameRequested) -> None:
        self.rename(event.chat_id)

    def on_chat_list_delete_requested(self, event: ChatList.DeleteRequested) -> None:
        self.delete(event.chat_id)

    def rename(self, chat_id: int | None) -> None:
        if chat_id is None or self.store is None:
            return
        store = self.store

        def renamed(title: str | None) -> None:
            if title:
                try:
                    store.rename_chat(chat_id, title)
                except StoreError as exc:
                    self.notify(str(exc), title="Chat", severity="error")
                self._refresh()

        title = self._title_of(chat_id)
        if title is not None:
            self.app.push_screen(RenameScreen(title), renamed)

    def delete(self, chat_id: int | None) -> None:
        if chat_id is None or self.store is None:
            return
        if self.busy and chat_id == self.chat_id:
            self.notify("a reply is on its way: Esc stops it first", title="Chat", severity="warning")
            return
        store = self.store

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            if self.busy and chat_id == self.chat_id:  # a message that waited for the model began meanwhile
                self.notify("a reply is on its way: Esc stops it first", title="Chat", severity="warning")
                return
            try:
                store.delete_chat(chat_id)
            except StoreError as exc:
                self.notify(str(exc), title="Chat", severity="error")
            if chat_id == self.chat_id:
                self.action_stop()  # not busy: leaves editing (the message edited went with the chat)
                self.chat_id = None
                self.adopt_chat_model()
                await self._sync_view()
            self._refresh()

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

    # --- copy -----------------------------------------------------------------------------------------------------
    def on_chat_view_copy_requested(self, event: ChatView.CopyRequested) -> None:
        self._copy(event.bubble.content, event.code)

    def copy_last(self, code: bool) -> None:
        replies = [m for m in self.stored_messages() if m.role == "assistant"]
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
