"""The Chat pane's layout (a mixin of ``ChatPane``): the chat list beside the open chat, and the header line.

The chat list (``#chat-sidebar``, or the bare ``#chat-list`` where there is no sidebar around it) takes 24 columns:
below ``LIST_MIN_WIDTH`` columns it hides itself so the conversation keeps the width (as oterm's and the llama.cpp
web UI's sidebars do), and it comes back when the terminal grows. Ctrl+L (``chat.toggle_list``) shows it and goes to
it, or, from the list, hides it; once the user has done that, the size no longer decides for this session.

The header names the chat and its model, and says when that model is not the one loaded (loading, not loaded,
its file missing). Where both do not fit, the title is shortened (the model's state said in fewer words where
little of the title would be left), then the model's name in its middle; its state is never cut.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from textual import events
from textual.containers import ScrollableContainer
from textual.css.query import NoMatches
from textual.widget import Widget

from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_prompt import ChatPrompt
from tuillm.tui.widgets.status_line import shorten_middle

LIST_MIN_WIDTH = 90  # below this many columns the list is hidden unless the user asked for it
HEADER_GAP = " · "
MIN_TITLE = 16  # columns of the title worth more than the model's state in full words
MIN_NAME = 8  # columns of the model's name worth more than the title's first character


@dataclass(frozen=True)
class HeaderModel:
    """The chat's model as the header names it: its name, and what it is doing where it is not the one loaded."""

    name: str
    state: str = ""  # in full words ("": it is the model loaded)
    short: str = ""  # in fewer words, for a narrow column

    def text(self, short: bool = False) -> str:
        state = self.short if short else self.state
        return f"{self.name} ({state})" if state else self.name


def fit_header(title: str, model: str, width: int, short_model: str | None = None) -> str:
    """``title · model`` in ``width`` columns: the title gives way first (down to one character and "…"), then
    the model's name from its end. ``short_model`` (the model's state in fewer words) takes the model's place where
    it would leave the title fewer than ``MIN_TITLE`` columns. ``width`` 0 (not laid out yet): as is."""
    text = f"{title}{HEADER_GAP}{model}"
    if width <= 0 or len(text) <= width:
        return text
    if short_model is not None and short_model != model and width - len(HEADER_GAP) - len(model) < MIN_TITLE:
        return fit_header(title, short_model, width)
    room = width - len(HEADER_GAP) - len(model)
    if room >= 2:
        return f"{title[: room - 1]}…{HEADER_GAP}{model}"
    return model if len(model) <= width else model[: max(width - 1, 0)] + "…"


def fit_model_header(title: str, model: HeaderModel, width: int) -> str:
    """``fit_header``; where even the model in fewer words leaves the title no room, the title down to its first
    character, then the model's name shortened in its middle: its state ("not loaded", "loading…") stays whole."""
    short = model.text(short=True)
    if width <= 0 or width - len(HEADER_GAP) - len(short) >= 2:
        return fit_header(title, model.text(), width, short)
    state = short[len(model.name):]
    room = width - 2 - len(HEADER_GAP) - len(state)  # the title's first character and "…" before it
    if room >= MIN_NAME:
        return f"{title[:1]}…{HEADER_GAP}{shorten_middle(model.name, room)}{state}"
    if width - len(state) >= MIN_NAME:
        return shorten_middle(model.name, width - len(state)) + state
    return fit_header(title, short, width)  # a column too narrow for anything: the start of it


class ChatLayout:
    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatMemory.
    query_one: Callable[..., Widget]
    focus_default: Callable[[], None]
    call_after_refresh: Callable[..., bool]
    _refresh_header: Callable[[], None]
    list_wanted: bool | None = None  # the user's choice (Ctrl+L); None: the terminal's width decides

    @property
    def sidebar(self) -> Widget:
        """The list's column: helper widgets around the ChatList (a filter) hide and show with it."""
        try:
            return self.query_one("#chat-sidebar")
        except NoMatches:
            return self.query_one(ChatList)

    @property
    def list_shown(self) -> bool:
        return bool(self.sidebar.display)

    def _auto_list(self, width: int) -> None:
        if self.list_wanted is None and width > 0:
            self._show_list(width >= LIST_MIN_WIDTH)

    def _show_list(self, shown: bool) -> None:
        sidebar = self.sidebar
        if sidebar.display == shown:
            return
        had_focus = sidebar.has_focus_within
        view = self.query_one("#chat-view", ScrollableContainer)
        following = view.scroll_y >= view.max_scroll_y  # the conversation's end is in view
        sidebar.display = shown
        if had_focus and not shown:
            self.focus_default()  # the focus must not stay on a hidden widget
        # The column's width changed (the pane's did not): once laid out again, fit the header to it, and keep
        # the end of the conversation in view if it was (the text rewraps to more or fewer lines).
        self.call_after_refresh(self._after_width_change, following)

    def _after_width_change(self, following: bool) -> None:
        self._fit_to_width()
        if following:
            self.query_one("#chat-view", ScrollableContainer).scroll_end(animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self._auto_list(event.size.width)
        # The header's title is shortened to the new width, known once the column is laid out again.
        self.call_after_refresh(self._fit_to_width)

    def _fit_to_width(self) -> None:
        """The header and the prompt's texts, in the fewer words a narrow column needs (or back in full)."""
        self._refresh_header()
        with suppress(NoMatches):  # being removed
            self.query_one(ChatPrompt).fit_texts()

    def action_toggle_list(self) -> None:
        """Ctrl+L: show the chat list and go to it; from the list, hide it (the chat keeps the width)."""
        if self.list_shown and self.sidebar.has_focus_within:
            self.list_wanted = False
            self._show_list(False)
            self.focus_default()
            return
        if not self.list_shown:
            self.list_wanted = True  # shown by the user: it stays when the terminal is narrow
            self._show_list(True)
        self.query_one(ChatList).focus()

    def header_width(self) -> int:
        """The columns the header line has for its text (0 before the first layout)."""
        try:
            return self.query_one("#chat-header").content_region.width
        except NoMatches:  # not composed yet, or being removed
            return 0
