"""Markdown that cannot write a control sequence to the terminal (a chat message's body)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from textual.await_complete import AwaitComplete
from textual.widget import AwaitMount, Widget
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownBlock

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


FIRST, LAST = "-first-block", "-last-block"


class SafeMarkdown(Markdown):
    """Markdown that never receives a control sequence: the full text (``update``, the first render) and each
    streamed fragment (``append``, what ``Markdown.get_stream`` writes) pass through ``safe_text``. A sequence split
    across two fragments loses its ESC in the first, so what reaches the second is plain text.

    Its first and last blocks carry the classes ``FIRST`` and ``LAST`` (app.tcss trims their margins), set as they
    mount. ``:first-child``/``:last-child`` rules did that, but an order-dependent rule on ``*`` makes Textual restyle
    every sibling of each widget mounted anywhere in the app: each streamed append restyled the whole reply's blocks
    (75 ms of the event loop per append in a 600-token reply, taken from the decoding threads)."""

    def __init__(self, markdown: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("parser_factory", chat_parser)
        super().__init__(markdown, **kwargs)

    def update(self, markdown: str) -> AwaitComplete:
        return super().update(safe_text(markdown))

    def append(self, markdown: str) -> AwaitComplete:
        return super().append(safe_text(markdown))

    def mount_all(self, widgets: Iterable[Widget], *, before: int | str | Widget | None = None,
                  after: int | str | Widget | None = None) -> AwaitMount:
        """Mount blocks (Markdown mounts its blocks only here, at the end: ``update`` after removing the old ones,
        ``append`` after the ones kept), marking the document's first and last block before they are styled."""
        widgets = list(widgets)
        blocks = [widget for widget in widgets if isinstance(widget, MarkdownBlock)]
        if blocks and before is None and after is None:
            kept = [child for child in self.children if isinstance(child, MarkdownBlock) and child not in widgets]
            if kept:
                kept[-1].remove_class(LAST)
            else:
                blocks[0].add_class(FIRST, update=False)  # not mounted yet: styled as they are registered
            blocks[-1].add_class(LAST, update=False)
        return super().mount_all(widgets, before=before, after=after)
