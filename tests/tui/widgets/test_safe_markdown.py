"""A chat message's Markdown keeps the reply's single line breaks, as chat apps (and the streamed tail) show it."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets._markdown import MarkdownParagraph

from tests.tui.app_helpers import run_async
from tuillm.tui.widgets.safe_markdown import SafeMarkdown

POEM = "The sea holds its secrets,\nthe shore keeps none,\nand the tide says both.\n\nA second verse."


class Host(App):
    def compose(self) -> ComposeResult:
        yield SafeMarkdown(POEM)


@run_async
async def test_single_newlines_are_line_breaks() -> None:
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        paragraphs = list(app.query(MarkdownParagraph))
        assert len(paragraphs) == 2  # a blank line still starts a paragraph
        first = paragraphs[0]
        assert str(first.render()).splitlines()[:3] == [
            "The sea holds its secrets,", "the shore keeps none,", "and the tide says both."]
        assert first.outer_size.height >= 3
