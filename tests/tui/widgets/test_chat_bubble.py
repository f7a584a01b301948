"""How the chat's bubbles are laid out: one blank row between messages whatever block ends one, none under the
role's line whatever block starts one, and a code line wider than the bubble wrapped (nothing cut at the right
edge, where only a mouse could scroll to it)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Label
from textual.widgets._markdown import MarkdownFence

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import chat_app
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.widgets.chat_messages import ChatView

# Each message ends with another kind of block (each has its own bottom margin in Textual's Markdown).
ENDINGS = ("A paragraph.", "- a bullet\n- another", "1. first\n2. second", "```\ncode\n```", "> a quote",
           "| a | b |\n|---|---|\n| 1 | 2 |", "### A heading", "Text, then a rule:\n\n---")
CODE = "result = compute(" + ", ".join(f"argument{i}" for i in range(12)) + ")"


@run_async
async def test_one_blank_row_between_messages_whatever_ends_them(tmp_path: Path) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Blocks")
        for i, text in enumerate(ENDINGS):
            store.add_message(chat.id, "user" if i % 2 == 0 else "assistant", text)
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=(80, 70)) as pilot:  # tall: every bubble on screen
        view = app.query_one(ChatView)
        await until(pilot, lambda: len(view.bubbles) == len(ENDINGS), "the chat shown")
        await pilot.pause()
        bubbles = view.bubbles
        for bubble, text in zip(bubbles, ENDINGS, strict=True):
            last = bubble.markdown.children[-1]
            assert bubble.region.bottom == last.region.bottom, f"a blank row at the end of {text!r}"
        for upper, lower in zip(bubbles, bubbles[1:], strict=False):
            assert lower.region.y - upper.region.bottom == 1, f"not one blank row after {upper.content!r}"


@run_async
async def test_a_message_starts_right_under_its_role_whatever_block_starts_it(tmp_path: Path) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Starts")
        for i, text in enumerate(ENDINGS):
            store.add_message(chat.id, "user" if i % 2 == 0 else "assistant", f"{text}\n\nThen more.")
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=(80, 80)) as pilot:
        view = app.query_one(ChatView)
        await until(pilot, lambda: len(view.bubbles) == len(ENDINGS), "the chat shown")
        await pilot.pause()
        for bubble, text in zip(view.bubbles, ENDINGS, strict=True):
            role, first = bubble.query_one(".bubble-role", Label), bubble.markdown.children[0]
            assert first.region.y == role.region.bottom, f"a blank row above {text!r}"


@run_async
async def test_a_wide_code_line_wraps_in_its_bubble(tmp_path: Path) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Code")
        store.add_message(chat.id, "user", "Call it.")
        store.add_message(chat.id, "assistant", f"Like this:\n\n```python\n{CODE}\n```")
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(ChatView)
        await until(pilot, lambda: len(view.bubbles) == 2, "the chat shown")
        await pilot.pause()
        fence = view.bubbles[1].query_one(MarkdownFence)
        code = fence.query_one(Label)
        assert fence.max_scroll_x == 0 and code.region.right <= fence.region.right  # nothing out of view
        assert code.content_size.height >= 2 and code.content_size.width < len(CODE)  # wrapped
        shown = "".join(strip.text for strip in code.render_lines(code.region.reset_offset))
        assert "".join(shown.split()) == "".join(CODE.split())  # every character on screen
