"""Renaming a chat (F2 in the chat list), driven with Pilot at 60x20: a title that holds escape sequences is shown
without them, and a pasted 10,000 characters are not taken whole."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import chat_app, chat_pane
from tuillm.core.chat.store import MAX_TITLE_CHARS, ChatStore
from tuillm.tui.screens.rename import RenameScreen

HOSTILE = "Plan\x1b[2J\x1b]0;pwned\x07 [bold]b[/bold]"  # clears the screen, renames the terminal; markup as text


def drawn(field: Input) -> str:
    return "".join(segment.text for y in range(field.size.height) for segment in field.render_line(y))


@run_async
async def test_rename_shows_the_title_without_its_sequences_and_bounds_the_new_one(tmp_path: Path) -> None:
    with ChatStore() as store:  # a title as an older version (or a message's first line) left it
        chat = store.create_chat()
        store.update_chat(chat.id, title=HOSTILE)
        store.add_message(chat.id, "user", "Hi")
    app = chat_app(tmp_path)
    async with app.run_test(size=(60, 20)) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == chat.id, "the chat open")
        pane.rename(chat.id)
        await until(pilot, lambda: isinstance(app.screen, RenameScreen) and bool(app.screen.query(Input)),
                    "the rename dialog")
        await pilot.pause()
        field = app.screen.query_one(Input)
        assert field.value == "Plan [bold]b[/bold]"
        assert "\x1b" not in drawn(field) and "[bold]b[/bold]" in drawn(field)  # shown, and as the text it is
        field.value = ""
        field.insert_text_at_cursor("x" * 10_000)  # a paste past the limit is refused, not taken whole
        assert len(field.value) <= MAX_TITLE_CHARS
        field.value = "y" * MAX_TITLE_CHARS
        await pilot.press("z", "enter")  # a key past the limit is not taken either
        await until(pilot, lambda: not isinstance(app.screen, RenameScreen), "the dialog closed")
    with ChatStore() as store:
        assert store.get_chat(chat.id).title == "y" * MAX_TITLE_CHARS
