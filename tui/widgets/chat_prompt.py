"""The chat's prompt: the message being written, with ``@path`` completion for attaching files.

Typing ``@`` (at the start or after a space) opens a list of the files and folders that complete what follows it
(``widgets.path_complete``); typing goes on filtering it, Up/Down move in it, Tab or Enter takes the highlighted
entry (a folder then lists its own entries), Esc closes it for that ``@``. The list sits above the prompt and never
takes the focus. Attaching the files named is the Chat pane's, when the message is sent (``panes.chat_attach``).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import stat
from collections.abc import Sequence

from textual import events
from textual.content import Content
from textual.message import Message
from textual.widgets import TextArea

from tuillm.core.chat.attachments import CHARS_PER_TOKEN, MAX_ATTACH_BYTES, head_problem, mentions
from tuillm.core.text import safe_line
from tuillm.tui.widgets.path_complete import Candidate, PathCompletions, candidates
from tuillm.tui.widgets.safe_text_area import SafeTextArea

# What the empty prompt says, and its title while the last message is edited: the longest that fits the prompt's
# width (60 columns with the chat list shown leave 32).
PLACEHOLDERS = ("Message · Enter sends · Ctrl+J new line", "Enter sends · Ctrl+J new line", "Enter sends")
EDITING_TITLES = ("Editing the last message · Enter resends · Esc cancels", "Editing · Enter resends · Esc cancels",
                  "Editing · Esc cancels")
# The "@path" being typed, ending at the cursor: after a space or at the line's start, optionally in quotes.
_TYPING = re.compile(r'(?:^|(?<=\s))@("?)([^\s"]*|(?<=")[^"]*)$')


def attaching(text: str) -> str | None:
    """What Enter will attach, for the prompt's lower border: each ``@path`` the message names (by the rules sending
    uses), a file with its size as a token estimate, anything else with what is wrong with it."""
    parts = []
    for mention in mentions(text):
        name = safe_line(mention.path)
        try:
            info = os.stat(os.path.expanduser(mention.path))
        except (OSError, ValueError):
            parts.append(f"{name}: not found")
            continue
        if not stat.S_ISREG(info.st_mode):
            parts.append(f"{name}: not a file")
        elif info.st_size > MAX_ATTACH_BYTES:
            parts.append(f"{name}: too big")
        elif (problem := head_problem(mention.path)) is not None:  # sending would refuse it: no estimate
            parts.append(f"{name}: {problem.value}")
        else:  # bytes for characters: an estimate, as the count before the model loads is
            tokens = math.ceil(info.st_size / CHARS_PER_TOKEN)
            parts.append(f"{name} (~{tokens} token{'' if tokens == 1 else 's'})")
    return "attaching " + " · ".join(parts) if parts else None


def fitting(forms: Sequence[str], width: int) -> str:
    """The first of ``forms`` (longest first) that fits in ``width`` columns; the last one when none does (0: not
    laid out yet, the first)."""
    return next((form for form in forms if width <= 0 or len(form) <= width), forms[-1])


class ChatPrompt(SafeTextArea):
    """The message being written: Enter sends; Shift+Enter (terminals that report it) or Ctrl+J add a line."""

    HELP_TITLE = "Prompt"

    class Submitted(Message):
        def __init__(self, prompt: ChatPrompt, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    _completions: PathCompletions | None = None
    _dismissed: tuple[int, int] | None = None  # where the "@" is whose list Esc closed
    _titles: Sequence[str] = ()  # the prompt holds a message being edited: its title, longest first (): none

    def on_resize(self) -> None:
        self.fit_texts()

    def fit_texts(self) -> None:
        """The placeholder and the title in the prompt's width: called on its resize, and by the Chat pane once a
        width change is laid out (a resize event does not always reach a widget whose size changed)."""
        width = self.content_size.width  # where the placeholder wraps
        self.placeholder = fitting(PLACEHOLDERS, width)
        # The title sits in the top border, between its corners and a space either side.
        self.border_title = fitting(self._titles, self.outer_size.width - 4) if self._titles else None

    def show_editing(self, titles: Sequence[str] = ()) -> None:
        """Title the prompt as editing a message, with the longest of ``titles`` that fits (none: not editing)."""
        self._titles = tuple(titles)
        self.fit_texts()

    @property
    def completing(self) -> bool:
        return self._completions is not None

    async def _on_key(self, event: events.Key) -> None:
        if self._completions is not None and await self._completion_key(event.key):
            event.stop()
            event.prevent_default()
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            if not self.read_only:
                self.insert("\n")
            return
        await super()._on_key(event)

    async def _completion_key(self, key: str) -> bool:
        """Handles a key meant for the open completion list; False when it is the prompt's."""
        assert self._completions is not None
        if key in ("up", "down"):
            self._completions.move(-1 if key == "up" else 1)
        elif key in ("tab", "enter"):
            chosen = self._completions.chosen
            if chosen is None:
                return False
            self._accept(chosen)
        elif key == "escape":
            typing = self._typing()
            self._dismissed = typing[0] if typing else None
            await self.close_completions()
        else:
            return False
        return True

    def _typing(self) -> tuple[tuple[int, int], bool, str] | None:
        """The "@path" being typed: where its "@" is, whether it is quoted, and the path typed so far."""
        row, col = self.cursor_location
        match = _TYPING.search(self.document.get_line(row)[:col])
        if match is None:
            return None
        return (row, match.start()), bool(match.group(1)), match.group(2)

    def _accept(self, chosen: Candidate) -> None:
        typing = self._typing()
        if typing is None:
            return
        (row, start), quoted, _typed = typing
        value = chosen.value
        if quoted or any(ch.isspace() for ch in value):
            # A folder's quote stays open so its entries can be typed inside it.
            text = f'@"{value}' if chosen.is_dir else f'@"{value}" '
        else:
            text = f"@{value}" if chosen.is_dir else f"@{value} "
        self.replace(text, (row, start), self.cursor_location)

    async def on_text_area_changed(self, event: TextArea.Changed) -> None:
        # Not stopped: the pane keeps the draft from the same message.
        if event.text_area is self:
            line = attaching(self.text)
            # Content, not a str: a str here is read as markup, and a file name may hold brackets.
            self.border_subtitle = Content(line) if line is not None else None
            await self.update_completions()

    async def on_text_area_selection_changed(self, event: TextArea.SelectionChanged) -> None:
        # The cursor left the "@path" (a click, Home): the list goes; typing in it is handled by Changed.
        if event.text_area is self and self._completions is not None and self._typing() is None:
            await self.close_completions()

    def on_blur(self) -> None:
        self.call_later(self.close_completions)

    async def update_completions(self) -> None:
        """Show, refresh or close the list for what is typed at the cursor."""
        typing = self._typing() if not self.read_only and self.has_focus else None
        if typing is None:
            self._dismissed = None  # the "@" whose list Esc closed is gone: a new one in its place opens one
        if typing is None or typing[0] == self._dismissed:
            await self.close_completions()
            return
        self._dismissed = None
        # Listed on a thread: a huge folder never stalls the keys. A listing the typing has moved past is dropped
        # (the keystroke that moved it lists again).
        found, cut = await asyncio.to_thread(candidates, typing[2])
        if self._typing() != typing:
            return
        if not found:
            await self.close_completions()
            return
        if self._completions is None:
            if self.parent is None:
                return
            self._completions = PathCompletions()
            await self.parent.mount(self._completions, before=self)
        self._completions.show(found, cut)

    async def close_completions(self) -> None:
        if self._completions is not None:
            completions, self._completions = self._completions, None
            await completions.remove()
