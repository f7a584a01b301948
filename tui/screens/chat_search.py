"""Search every chat's messages (Ctrl+F in the Chat pane): results update as the user types, best match first;
Enter opens the highlighted one (or, from the search field, the first), Esc closes.

The query runs in a worker thread a moment after typing stops (``DEBOUNCE_S``), so a large database never holds up
the keys; only the answer to the text still in the field is shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from tuillm.core.chat.search import Found, Hit
from tuillm.core.chat.store import StoreError
from tuillm.core.text import safe_line
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.safe_input import SafeInput

DEBOUNCE_S = 0.15  # after the last key: one query per pause in typing, not one per key
TITLE_CHARS = 40
HINT = "Type words to find in every chat (the last may be the start of a word)."
NO_INDEX = "This SQLite has no FTS5: a plain substring search, newest first."


def when(created: float, now: float | None = None) -> str:
    """A message's date, as short as is clear: the time today, the day this year, else the full date."""
    stamp, today = time.localtime(created), time.localtime(time.time() if now is None else now)
    if stamp[:3] == today[:3]:
        return time.strftime("%H:%M", stamp)
    if stamp.tm_year == today.tm_year:
        return time.strftime("%d %b", stamp)
    return time.strftime("%d %b %Y", stamp)


def result_line(hit: Hit, now: float | None = None) -> Text:
    """One result: the chat's title and the message's date, then the excerpt with the words found marked."""
    title = safe_line(hit.chat_title)
    title = title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"
    text = Text(title, style="bold")
    text.append(f" · {when(hit.created, now)} · {hit.role}\n", style="dim")
    start = len(text)
    text.append("  " + hit.snippet)  # already one safe line
    for begin, end in hit.marks:
        text.stylize("bold reverse", start + 2 + begin, start + 2 + end)
    return text


class Answered(Message):
    """A query's answer (``found``, or ``error``), from the worker thread."""

    def __init__(self, text: str, found: Found | None, error: str = "") -> None:
        super().__init__()
        self.text = text
        self.found = found
        self.error = error


class ChatSearchScreen(ModalScreen[tuple[int, int] | None]):
    """Dismissed with (chat id, message id) of the message to open, or None."""

    HELP_TITLE = "Search chats"
    AUTO_FOCUS = "#search-input"
    BINDINGS = keymap.CHAT_SEARCH
    DEFAULT_CSS = DIALOG_CSS + """
    #search-dialog { max-width: 90; }
    #search-status { color: $text-muted; }
    #search-results { height: auto; max-height: 14; border: none; padding: 0; }
    """

    def __init__(self, search: Callable[[str], Found], text: str = "") -> None:
        super().__init__()
        self.search = search  # the store's search_messages: thread-safe
        self.initial = text
        self.hits: list[Hit] = []
        self.shown_text: str | None = None  # the text the list answers (None: none yet)
        self.open_when_ready = False  # Enter came before the answer to the text typed
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="search-dialog"):
            yield Label("Search all chats  (Enter opens, Esc closes)", classes="dialog-title")
            yield SafeInput(self.initial, placeholder="Words to find…", id="search-input")
            yield Label(HINT, id="search-status", markup=False)
            yield OptionList(id="search-results")

    @property
    def field(self) -> Input:
        return self.query_one("#search-input", Input)

    @property
    def results(self) -> OptionList:
        return self.query_one("#search-results", OptionList)

    def on_mount(self) -> None:
        if self.initial:
            self._query()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self._query)

    def _query(self) -> None:
        self._timer = None
        self._run(self.field.value)

    @work(thread=True, exclusive=True, group="chat-search")
    def _run(self, text: str) -> None:
        try:
            self.post_message(Answered(text, self.search(text)))
        except StoreError as exc:
            self.post_message(Answered(text, None, str(exc)))

    def on_answered(self, answer: Answered) -> None:
        if answer.text != self.field.value:
            return  # an answer to what was typed before: the next one is on its way
        self.shown_text = answer.text
        self.hits = answer.found.hits if answer.found is not None else []
        self.results.clear_options()
        now = time.time()
        self.results.add_options([Option(result_line(hit, now)) for hit in self.hits])
        if self.hits:
            self.results.highlighted = 0
        self._set_status(answer)
        if self.open_when_ready:
            self.open_when_ready = False
            self._open(0)

    def _set_status(self, answer: Answered) -> None:
        found = answer.found
        if answer.error:
            status = answer.error
        elif found is None or not answer.text.strip():
            status = HINT
        elif not found.hits:
            status = "No message holds these words."
        else:
            count = len(found.hits)
            status = f"{count} message{'s' if count > 1 else ''}, best match first"
        if found is not None and not found.indexed:
            status = f"{status}  {NO_INDEX}"
        self.query_one("#search-status", Label).update(safe_line(status))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.shown_text == self.field.value and self._timer is None:
            self._open(self.results.highlighted or 0)
        else:
            self.open_when_ready = True  # typed and pressed Enter at once: open the first answer when it comes

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._open(event.option_index)

    def _open(self, index: int) -> None:
        if 0 <= index < len(self.hits):
            hit = self.hits[index]
            self.dismiss((hit.chat_id, hit.message_id))

    def action_into_results(self) -> None:
        if self.hits:
            # At once, not with Widget.focus()'s call_later: "↓ ↓ Enter" arriving in one read must reach the list.
            self.set_focus(self.results)

    def action_cancel(self) -> None:
        self.dismiss(None)
