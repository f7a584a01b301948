"""The Chat pane's search (a mixin of ``ChatPane``): the chat list's filter by title (``widgets.chat_sidebar``), and
Ctrl+F, the full-text search of every chat's messages (``screens.chat_search``), which opens the chat of the message
picked and brings that message into view, selected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.app import App

from tuillm.core.chat.store import ChatStore, StoreError
from tuillm.tui.widgets.chat_messages import ChatColumn
from tuillm.tui.widgets.chat_sidebar import ChatSidebar

BUSY = "a reply is on its way: Esc stops it before another chat is opened"


class ChatSearch:
    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatMemory.
    app: App[int]
    notify: Callable[..., None]
    store: ChatStore | None
    chat_id: int | None
    busy: bool
    column: ChatColumn
    _switch_to: Callable[[int | None], None]
    _sync_view: Callable[[], Awaitable[None]]
    _refresh_list: Callable[[], None]

    def on_chat_sidebar_filtered(self, _event: ChatSidebar.Filtered) -> None:
        self._refresh_list()  # the list asks the store for the chats the filter matches

    def action_search(self) -> None:
        from tuillm.tui.screens.chat_search import ChatSearchScreen  # loaded when first opened

        if self.store is not None:
            self.app.push_screen(ChatSearchScreen(self.store.search_messages), self.open_found)

    async def open_found(self, found: tuple[int, int] | None) -> None:
        """Open the chat of a message the search found, and show that message."""
        if found is None:
            return
        chat_id, message_id = found
        if chat_id != self.chat_id:
            if self.busy:
                self.notify(BUSY, title="Search", severity="warning")
                return
            self._switch_to(chat_id)
            await self._sync_view()
        if self.store is not None and not self.busy:  # (a streaming reply keeps its branch shown)
            try:
                self.store.activate(message_id)  # a message on another branch: that branch is shown
            except StoreError:
                pass  # deleted since the search: said below
            await self._sync_view()
        if not await self.column.reveal(message_id):
            # The message is in the chat but not on the branch shown (or was deleted since the search).
            self.notify("that message is not in the chat as it is shown now", title="Search", severity="warning")
