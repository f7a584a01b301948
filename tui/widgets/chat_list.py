"""The Chat pane's list of saved chats, newest first: Enter opens one; n, r and d ask for a new, renamed or deleted
chat with typed messages the pane answers."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tuillm.core.chat.store import Chat
from tuillm.core.text import safe_line
from tuillm.tui import keymap

TITLE_CHARS = 22  # what fits the list's 24 columns
# A short ending in brackets, " (fork)" above all: kept when the title is cut, or a fork and its chat look the same.
_SUFFIX = re.compile(r" \([^()]{1,8}\)$")


def short_title(title: str) -> str:
    """The title as one terminal-safe line that fits the list (a title may come from a model's words)."""
    title = safe_line(title)
    if len(title) <= TITLE_CHARS:
        return title
    suffix = _SUFFIX.search(title)
    tail = suffix.group(0) if suffix else ""
    return title[: TITLE_CHARS - 1 - len(tail)].rstrip() + "…" + tail


class ChatList(OptionList):
    HELP_TITLE = "Chat list"
    BINDINGS = keymap.CHAT_LIST

    class Opened(Message):
        def __init__(self, chat_id: int) -> None:
            super().__init__()
            self.chat_id = chat_id

    class NewRequested(Message):
        pass

    class RenameRequested(Message):
        def __init__(self, chat_id: int) -> None:
            super().__init__()
            self.chat_id = chat_id

    class DeleteRequested(Message):
        def __init__(self, chat_id: int) -> None:
            super().__init__()
            self.chat_id = chat_id

    def show(self, chats: Sequence[Chat], current: int | None, *, empty: str | None = None) -> None:
        """Lists ``chats`` with ``current`` highlighted; ``empty``: the line shown when there is no chat (a filter
        that matches none)."""
        self.clear_options()
        # Text, not str: a title is the user's words, not markup.
        self.add_options([Option(Text(short_title(chat.title)), id=str(chat.id)) for chat in chats])
        if not chats and empty:
            self.add_option(Option(Text(empty, style="italic"), disabled=True))
        for index, chat in enumerate(chats):
            if chat.id == current:
                self.highlighted = index

    def highlighted_chat(self) -> int | None:
        if self.highlighted is None:
            return None
        option_id = self.get_option_at_index(self.highlighted).id
        return int(option_id) if option_id else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Opened(int(event.option.id)))

    def action_new_chat(self) -> None:
        self.post_message(self.NewRequested())

    def action_rename(self) -> None:
        chat_id = self.highlighted_chat()
        if chat_id is not None:
            self.post_message(self.RenameRequested(chat_id))

    def action_delete(self) -> None:
        chat_id = self.highlighted_chat()
        if chat_id is not None:
            self.post_message(self.DeleteRequested(chat_id))
