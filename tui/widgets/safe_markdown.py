"""Markdown that cannot write a control sequence to the terminal (a chat message's body)."""

from __future__ import annotations

from textual.await_complete import AwaitComplete
from textual.widgets import Markdown

from tuillm.core.text import safe_text


class SafeMarkdown(Markdown):
    """Markdown that never receives a control sequence: the full text (``update``, the first render) and each
    streamed fragment (``append``, what ``Markdown.get_stream`` writes) pass through ``safe_text``. A sequence split
    across two fragments loses its ESC in the first, so what reaches the second is plain text."""

    def update(self, markdown: str) -> AwaitComplete:
        return super().update(safe_text(markdown))

    def append(self, markdown: str) -> AwaitComplete:
        return super().append(safe_text(markdown))
