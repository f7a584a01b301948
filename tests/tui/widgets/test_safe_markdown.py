"""A chat message's Markdown keeps the reply's single line breaks, as chat apps (and the streamed tail) show it."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets._markdown import MarkdownParagraph

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import chat_app
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.widgets.safe_markdown import FIRST, LAST, SafeMarkdown

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


@run_async
async def test_the_first_and_last_blocks_are_marked_as_blocks_are_appended() -> None:
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        markdown = app.query_one(SafeMarkdown)
        await pilot.pause()
        await markdown.append("\n\nA third paragraph.\n\n- a bullet\n")
        await pilot.pause()
        blocks = list(markdown.children)
        assert len(blocks) == 4
        assert [block.has_class(FIRST) for block in blocks] == [True, False, False, False]
        assert [block.has_class(LAST) for block in blocks] == [False, False, False, True]
        await markdown.update("One paragraph now.")
        await pilot.pause()
        (only,) = markdown.children
        assert only.has_class(FIRST) and only.has_class(LAST)


@run_async
async def test_no_style_rule_depends_on_the_order_of_widgets(tmp_path: Path) -> None:
    """A :first-child/:last-child rule (on ``*``, any widget) makes Textual restyle every sibling of each widget
    mounted: a streamed reply's blocks, once per append. The classes above do that job instead. The app's CSS and
    the default CSS of every widget it mounts (a chat's bubbles included) are checked."""
    with ChatStore() as store:
        chat = store.create_chat("Blocks")
        store.add_message(chat.id, "user", "A question.")
        store.add_message(chat.id, "assistant", POEM)
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: len(app.query(MarkdownParagraph)) == 3, "the chat shown")
        ordered = {"first-child", "last-child", "first-of-type", "last-of-type", "odd", "even", "empty"}
        assert any(".bubble-body" in rule.css for rule in app.stylesheet.rules)  # app.tcss is read
        assert not [rule.css for rule in app.stylesheet.rules if rule.pseudo_classes & ordered]
