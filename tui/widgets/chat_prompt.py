"""The chat's prompt: the message being written."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class ChatPrompt(TextArea):
    """The message being written: Enter sends; Shift+Enter (terminals that report it) or Ctrl+J add a line."""

    HELP_TITLE = "Prompt"

    class Submitted(Message):
        def __init__(self, prompt: ChatPrompt, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    async def _on_key(self, event: events.Key) -> None:
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
