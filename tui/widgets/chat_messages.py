"""The Chat pane's open chat: its column (header, message view and prompt).

The bubbles live in ``chat_bubble``, the windowed message view in ``chat_view``; both are re-exported here, where
the pane and its tests have always found them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label

from tuillm.core.chat.store import Message as StoredMessage
from tuillm.core.text import safe_line
from tuillm.tui.widgets.chat_bubble import MessageBubble, bubble_header, last_code_block
from tuillm.tui.widgets.chat_prompt import EDITING_TITLES, PLACEHOLDERS, ChatPrompt
from tuillm.tui.widgets.chat_view import ChatView

__all__ = ["ChatColumn", "ChatView", "MessageBubble", "bubble_header", "last_code_block"]


class ChatColumn(Vertical):
    """The open chat: a header line (title and model), its messages and the prompt."""

    def compose(self) -> ComposeResult:
        yield Label("", id="chat-header", markup=False)
        yield ChatView(id="chat-view")
        # In a box of its own: Textual renders, for each frame, every widget whose parent's region overlaps what
        # changed, so a prompt straight in the column was rendered again (~1 ms, its theme applied anew) for each
        # draw of a streaming reply above it.
        with Vertical(id="chat-prompt-box"):
            # Its placeholder is shortened to fit its width (a narrow column) once laid out.
            yield ChatPrompt(id="chat-prompt", placeholder=PLACEHOLDERS[0], soft_wrap=True)

    @property
    def view(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def prompt(self) -> ChatPrompt:
        return self.query_one(ChatPrompt)

    def set_header(self, text: str) -> None:
        self.query_one("#chat-header", Label).update(safe_line(text))  # a chat's title and a model's name

    async def show(self, stored: Sequence[StoredMessage], streaming: bool,
                   label: Callable[[str], str] = str) -> None:
        """Make the view match the stored messages (as stored: the view converts what it mounts). ``streaming``:
        the last message, if incomplete, is the reply being streamed; ``label`` names a message's model."""
        await self.view.show(stored, streaming, label)

    async def reveal(self, message_id: int) -> bool:
        """Bring the message into view (mounting it if it is far from what is shown) and select it, as ↑/↓ do;
        False if it is not in the chat shown."""
        return await self.view.reveal(message_id)

    def streaming_bubble(self) -> MessageBubble | None:
        """The bubble of the reply being streamed, if the last one is."""
        bubble = self.view.last_bubble()
        return bubble if bubble is not None and bubble.role == "assistant" and bubble.streaming else None

    def start_editing(self, text: str, titles: Sequence[str] = EDITING_TITLES) -> None:
        prompt = self.prompt
        prompt.text = text
        prompt.move_cursor(prompt.document.end)
        prompt.show_editing(titles)
        prompt.focus()

    def stop_editing(self, draft: str = "") -> None:
        """The prompt back to writing a new message, holding ``draft`` (the chat's unsent text)."""
        prompt = self.prompt
        prompt.text = draft
        prompt.move_cursor(prompt.document.end)
        prompt.show_editing()
