"""The Chat pane's widgets: the open chat's column (header, message view with one bubble per stored message, and
the prompt).

A message's text comes from a model (or a template, or a database row): ``SafeMarkdown`` strips control sequences
from every text it is given, whole or streamed, so no reply can write escape sequences to the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Label, Markdown

from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.text import safe_line, safe_text
from tuillm.tui.widgets.chat_prompt import ChatPrompt

PLACEHOLDER = "Message · Enter sends · Ctrl+J new line"
EDITING_TITLE = "Editing the last message · Enter resends · Esc cancels"
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}
# A fenced block (``` or ~~~), closed by the same fence or left open at the end (a reply cut short).
_CODE_BLOCK = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)


def last_code_block(text: str) -> str | None:
    """The content of the last fenced code block in Markdown ``text``, or None when there is none."""
    blocks = list(_CODE_BLOCK.finditer(text))
    return blocks[-1].group(2).rstrip("\n") if blocks else None


def bubble_header(role: str, complete: bool, stats: dict[str, Any] | None, streaming: bool = False,
                  model: str = "") -> str:
    head = ROLE_NAMES.get(role) or safe_line(role).strip()  # a role other than ours comes from a database row
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


class SafeMarkdown(Markdown):
    """Markdown that never receives a control sequence: the full text (``update``, the first render) and each
    streamed fragment (``append``, what ``Markdown.get_stream`` writes) pass through ``safe_text``. A sequence split
    across two fragments loses its ESC in the first, so what reaches the second is plain text."""

    def update(self, markdown: str) -> AwaitComplete:
        return super().update(safe_text(markdown))

    def append(self, markdown: str) -> AwaitComplete:
        return super().append(safe_text(markdown))


class MessageBubble(Vertical):
    """One message: a header line (who, and the reply's figures) over its Markdown body."""

    def __init__(self, role: str, content: str, *, message_id: int | None = None, complete: bool = True,
                 stats: dict[str, Any] | None = None, streaming: bool = False, model: str = "") -> None:
        super().__init__(classes=f"bubble -{role}")
        self.role = role
        self.content = content
        self.message_id = message_id
        self.complete = complete
        self.stats = stats
        self.streaming = streaming
        self.model = model  # how the reply's model is named ("" when not known)

    def compose(self) -> ComposeResult:
        yield Label(bubble_header(self.role, self.complete, self.stats, self.streaming, self.model),
                    classes="bubble-role",
                    markup=False)
        yield SafeMarkdown(self.content, classes="bubble-body")

    def on_resize(self) -> None:
        if isinstance(self.parent, ChatView):
            self.parent.follow()

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def set_content(self, content: str, *, complete: bool, stats: dict[str, Any] | None) -> None:
        """The full update that ends a stream (or shows a message changed on disk)."""
        changed = content != self.content or self.streaming
        self.content, self.complete, self.stats, self.streaming = content, complete, stats, False
        self.query_one(".bubble-role", Label).update(bubble_header(self.role, complete, stats, model=self.model))
        if changed:
            await self.markdown.update(content)


class ChatView(VerticalScroll):
    """The conversation. Focus it (Shift+Tab from the prompt) to pick a message with ↑/↓ and copy it."""

    HELP_TITLE = "Chat messages"
    can_focus = True
    BINDINGS: list[BindingType] = [
        Binding("up", "select(-1)", "Previous message", show=False, id="chat.previous_message",
                tooltip="Select the message above"),
        Binding("down", "select(1)", "Next message", show=False, id="chat.next_message",
                tooltip="Select the message below"),
        Binding("c", "copy_message", "Copy message", id="chat.copy_message",
                tooltip="Copy the selected message (OSC 52)"),
        Binding("b", "copy_code", "Copy code", id="chat.copy_code",
                tooltip="Copy the last code block of the selected message"),
    ]

    class CopyRequested(Message):
        def __init__(self, bubble: MessageBubble, code: bool) -> None:
            super().__init__()
            self.bubble = bubble
            self.code = code

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.selected: int | None = None
        # Follow new text only while the user is at the bottom: scrolling up stops it, scrolling back resumes.
        # (Not Widget.anchor(): it leaves a negative scroll offset when the content is shorter than the view.)
        self.at_bottom = True

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.at_bottom = new_value >= self.max_scroll_y - 1

    def follow(self) -> None:
        """Called when the content grew: keep the end in view if the user was there."""
        if self.at_bottom:
            self.scroll_end(animate=False)

    def follow_from_now(self) -> None:
        """The user sent a message: show it and follow the reply, wherever the view was (scrolling up while the
        reply streams stops following again, through ``watch_scroll_y``)."""
        self.at_bottom = True
        self.scroll_end(animate=False)

    @property
    def bubbles(self) -> list[MessageBubble]:
        return list(self.query_children(MessageBubble))

    def selected_bubble(self) -> MessageBubble | None:
        bubbles = self.bubbles
        if not bubbles:
            return None
        index = len(bubbles) - 1 if self.selected is None else min(self.selected, len(bubbles) - 1)
        return bubbles[index]

    def _mark(self, focused: bool = True) -> None:
        current = self.selected_bubble() if focused else None
        for bubble in self.bubbles:
            bubble.set_class(bubble is current, "-selected")
        if current is not None:
            self.scroll_to_widget(current, animate=False, top=current.outer_size.height > self.size.height)

    def on_focus(self) -> None:
        self.selected = None  # the newest message first
        self._mark()

    def on_blur(self) -> None:
        self._mark(focused=False)

    def action_select(self, step: int) -> None:
        bubbles = self.bubbles
        if not bubbles:
            return
        index = len(bubbles) - 1 if self.selected is None else self.selected
        self.selected = max(0, min(len(bubbles) - 1, index + step))
        self._mark()

    def action_copy_message(self) -> None:
        bubble = self.selected_bubble()
        if bubble is not None:
            self.post_message(self.CopyRequested(bubble, code=False))

    def action_copy_code(self) -> None:
        bubble = self.selected_bubble()
        if bubble is not None:
            self.post_message(self.CopyRequested(bubble, code=True))

class ChatColumn(Vertical):
    """The open chat: a header line (title and model), its messages and the prompt."""

    def compose(self) -> ComposeResult:
        yield Label("", id="chat-header", markup=False)
        yield ChatView(id="chat-view")
        yield ChatPrompt(id="chat-prompt", placeholder=PLACEHOLDER, soft_wrap=True)

    @property
    def view(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def prompt(self) -> ChatPrompt:
        return self.query_one(ChatPrompt)

    def set_header(self, text: str) -> None:
        self.query_one("#chat-header", Label).update(safe_line(text))  # a chat's title and a model's name

    async def show(self, stored: Sequence[StoredMessage], streaming: bool) -> None:
        """Make the bubbles match the stored messages: keep the common start, update changed text, remove what
        was deleted (regenerate, edit), mount what is new. ``streaming``: the last message, if incomplete, is the
        reply being streamed."""
        view = self.view
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
                             streaming=streaming and not m.complete and m is stored[-1], model=m.model)
               for m in stored[keep:]]
        if new:
            await view.mount_all(new)
        view.follow()

    def streaming_bubble(self) -> MessageBubble | None:
        """The bubble of the reply being streamed, if the last one is."""
        bubbles = self.view.bubbles
        if bubbles and bubbles[-1].role == "assistant" and bubbles[-1].streaming:
            return bubbles[-1]
        return None

    def start_editing(self, text: str) -> None:
        prompt = self.prompt
        prompt.text = text
        prompt.move_cursor(prompt.document.end)
        prompt.border_title = EDITING_TITLE
        prompt.focus()

    def stop_editing(self, draft: str = "") -> None:
        """The prompt back to writing a new message, holding ``draft`` (the chat's unsent text)."""
        prompt = self.prompt
        prompt.text = draft
        prompt.move_cursor(prompt.document.end)
        prompt.border_title = None
