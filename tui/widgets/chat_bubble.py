"""One message of the chat view: its header line (who wrote it, its figures, where it stands among its
alternatives) over its Markdown body. While a reply streams, its last lines are drawn below the Markdown as plain
text until they fill a few rows (``stream_tail``: drawing every update through the Markdown took ~13% of the
decoding threads' speed).

A message's text comes from a model (or a template, or a database row): ``SafeMarkdown`` strips control sequences
from every text it is given, whole or streamed, so no reply can write escape sequences to the terminal. It (and
Textual's Markdown parser under it, ~20 ms) loads with the first bubble, not before the app's first frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label

from tuillm.core.chat.attachments import collapse_attachments
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.text import safe_line, safe_text
from tuillm.tui.widgets.stream_tail import StreamTail, finished_length

if TYPE_CHECKING:
    from tuillm.tui.widgets.safe_markdown import SafeMarkdown

ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}
# A fenced block (``` or ~~~), closed by the same fence or left open at the end (a reply cut short).
_CODE_BLOCK = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)


def last_code_block(text: str) -> str | None:
    """The content of the last fenced code block in Markdown ``text``, or None when there is none."""
    blocks = list(_CODE_BLOCK.finditer(text))
    return blocks[-1].group(2).rstrip("\n") if blocks else None


def writer(message: StoredMessage, label: Callable[[str], str]) -> str:
    """Who wrote a stored reply, named by ``label``: "model", or "model + adapter" ('' when not known)."""
    if not message.model:
        return ""
    return label(message.model) + (f" + {label(message.adapter)}" if message.adapter else "")


def bubble_header(role: str, complete: bool, stats: dict[str, Any] | None, streaming: bool = False,
                  model: str = "", alternatives: tuple[int, int] | None = None) -> str:
    head = ROLE_NAMES.get(role) or safe_line(role).strip()  # a role other than ours comes from a database row
    if alternatives is not None:
        head += f" ‹{alternatives[0]}/{alternatives[1]}›"  # one of several replies (or edits) at this point
    if streaming:
        return f"{head} …"  # the model is named with the figures, once the reply ends
    if model:
        head += f" · {safe_line(model).strip()}"  # who wrote the reply (a file name, from a database row)
    if not complete:
        stopped = bool(stats) and stats.get("finish_reason") == "cancelled"
        head += " · stopped" if stopped else " · interrupted"
    if stats and stats.get("generated_tokens"):
        head += f" · {stats['generated_tokens']} tokens, {stats.get('tokens_per_s', 0.0):.1f} tok/s"
    return head


class MessageBubble(Vertical):
    """One message: a header line (who, and the reply's figures) over its Markdown body."""

    class Resized(Message):
        """The bubble's height changed (its text grew): the view keeps the end in view if the user is there."""

    def __init__(self, role: str, content: str, *, message_id: int | None = None, complete: bool = True,
                 stats: dict[str, Any] | None = None, streaming: bool = False, model: str = "",
                 alternatives: tuple[int, int] | None = None) -> None:
        # -streaming: the reply's last lines are below its Markdown, a block apart (app.tcss)
        super().__init__(classes=f"bubble -{role}" + (" -streaming" if streaming else ""))
        self.role = role
        self.content = content
        self.message_id = message_id
        self.complete = complete
        self.stats = stats
        self.streaming = streaming
        self.model = model  # how the reply's model is named ("" when not known)
        self.alternatives = alternatives
        self.stored: StoredMessage | None = None  # the stored message shown, as given (to tell what changed)

    @classmethod
    def of(cls, message: StoredMessage, *, streaming: bool, label: Callable[[str], str]) -> MessageBubble:
        """The bubble of a stored message: its text without control sequences (stored as it came), its model
        named by ``label``. Done only for the bubbles mounted, so a long chat converts only what is near the view."""
        bubble = cls(message.role, safe_text(message.content), message_id=message.id, complete=message.complete,
                     stats=message.stats, streaming=streaming, model=writer(message, label),
                     alternatives=message.alternatives)
        bubble.stored = message
        return bubble

    def compose(self) -> ComposeResult:
        from tuillm.tui.widgets.safe_markdown import SafeMarkdown

        yield Label(self._header(), classes="bubble-role", markup=False)
        yield SafeMarkdown(self._shown(self.content), classes="bubble-body")
        if self.streaming:
            yield StreamTail()

    def _shown(self, content: str) -> str:
        # An attached file is drawn as one line (a few hundred KB highlighted take seconds); copy and the model
        # still get the message as stored.
        return collapse_attachments(content) if self.role == "user" else content

    def _header(self) -> str:
        return bubble_header(self.role, self.complete, self.stats, self.streaming, self.model, self.alternatives)

    def on_resize(self) -> None:
        self.post_message(self.Resized())

    @property
    def markdown(self) -> SafeMarkdown:
        from tuillm.tui.widgets.safe_markdown import SafeMarkdown

        return self.query_one(SafeMarkdown)

    @property
    def text_shown(self) -> str:
        """The text drawn: the Markdown's source, and a streaming reply's lines not yet moved to it."""
        tails = self.query_children(StreamTail)
        return self.markdown.source + (tails.first().text if tails else "")

    async def stream(self, text: str) -> None:
        """Draw ``text``, streamed, after what is shown, in the tail; when the tail is full, the blocks finished by
        then go to the Markdown (the bubble is laid out again then, and not between)."""
        tails = self.query_children(StreamTail)
        if not self.streaming or not tails or not self.is_attached:
            return  # the stream was ended (a full update drew the message), or its chat closed
        tail = tails.first()
        pending = tail.text + text
        done = finished_length(pending) if tail.overflows(pending) else 0
        if not done:
            tail.show(pending)
            return
        # One frame shows the blocks moved: drawn in neither (a flicker) nor both (the text twice) meanwhile, and
        # the bubble is laid out once for the Markdown that grew and the tail that shrank.
        with self.app.batch_update():
            await self.markdown.append(pending[:done])
            tail.show(pending[done:])

    async def set_content(self, content: str, *, complete: bool, stats: dict[str, Any] | None) -> None:
        """The full update that ends a stream (or shows a message changed on disk)."""
        changed = content != self.content or self.streaming
        self.content, self.complete, self.stats, self.streaming = content, complete, stats, False
        self.query_one(".bubble-role", Label).update(self._header())
        with self.app.batch_update():  # the tail leaves in the frame the Markdown takes its text: no flash
            self.remove_class("-streaming")
            if changed:
                await self.markdown.update(self._shown(content))
            await self.query_children(StreamTail).remove()

    async def update_from(self, message: StoredMessage, label: Callable[[str], str]) -> None:
        """Show ``message`` (the same message, changed: the end of a stream, a new alternative)."""
        self.stored = message
        self.model = writer(message, label)
        self.alternatives = message.alternatives
        await self.set_content(safe_text(message.content), complete=message.complete, stats=message.stats)
