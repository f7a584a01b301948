"""The Chat pane's sidebar: a filter above the list of saved chats. Typing narrows the list to the chats whose
titles hold the words typed (the pane asks the store, ``ChatStore.search``); ↓ or Enter moves into the list, Esc
clears the filter, / in the list comes back to it.

Everything the chat list is lives in this one container (``#chat-sidebar``), so the layout can hide or collapse it
as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input

from tuillm.core.chat.store import Chat
from tuillm.tui import keymap
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.safe_input import SafeInput

PLACEHOLDER = "Filter chats…"


class ChatSidebar(Vertical):
    HELP_TITLE = "Chat list filter"
    BINDINGS = keymap.CHAT_FILTER

    class Filtered(Message):
        """The filter's text changed: the pane lists the chats it matches (``show``)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        yield SafeInput(placeholder=PLACEHOLDER, id="chat-filter", compact=True)
        yield ChatList(id="chat-list")

    @property
    def filter_input(self) -> Input:
        return self.query_one("#chat-filter", Input)

    @property
    def chat_list(self) -> ChatList:
        return self.query_one(ChatList)

    @property
    def filter(self) -> str:
        """What the chats are filtered by ('' for none)."""
        return self.filter_input.value.strip()

    def show(self, chats: Sequence[Chat], current: int | None) -> None:
        """The chats that match the filter (the pane's store query), ``current`` highlighted if it is one."""
        self.chat_list.show(chats, current, empty="No chat title matches" if self.filter else None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear":
            # With nothing to clear, Esc is the pane's (stop a reply, leave editing).
            return bool(self.filter_input.value)
        if action == "into_list":
            return self.filter_input.has_focus
        if action == "to_filter":
            return not self.filter_input.has_focus
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Filtered(self.filter))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_into_list()

    def action_clear(self) -> None:
        self.filter_input.value = ""  # Changed follows: the whole list comes back

    def action_into_list(self) -> None:
        chat_list = self.chat_list
        if chat_list.highlighted is None and chat_list.option_count:
            chat_list.highlighted = 0
        # At once, not with Widget.focus()'s call_later: "↓ ↓ Enter" arriving in one read must reach the list.
        self.screen.set_focus(chat_list)

    def action_to_filter(self) -> None:
        self.filter_input.focus()
