"""Markdown that cannot write a control sequence to the terminal (a chat message's body)."""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from textual.await_complete import AwaitComplete
from textual.widgets import Markdown

from tuillm.core.text import safe_text


def _hard_breaks(state: StateCore) -> None:
    # markdown-it's "breaks" option acts only in its HTML renderer; Textual reads the tokens, so they change here.
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


def chat_parser() -> MarkdownIt:
    """GitHub-flavoured Markdown where a single newline is a line break, as chat apps show a reply: a poem, an
    address or a list without blank lines keeps its lines (the streamed tail shows them so, too)."""
    parser = MarkdownIt("gfm-like")
    parser.core.ruler.push("hard_breaks", _hard_breaks)
    return parser


class SafeMarkdown(Markdown):
    """Markdown that never receives a control sequence: the full text (``update``, the first render) and each
    streamed fragment (``append``, what ``Markdown.get_stream`` writes) pass through ``safe_text``. A sequence split
    across two fragments loses its ESC in the first, so what reaches the second is plain text."""

    def __init__(self, markdown: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("parser_factory", chat_parser)
        super().__init__(markdown, **kwargs)

    def update(self, markdown: str) -> AwaitComplete:
        return super().update(safe_text(markdown))

    def append(self, markdown: str) -> AwaitComplete:
        return super().append(safe_text(markdown))
