"""F1's help: generated from the key map with the user's overrides, the keys that work where F1 was pressed first
(then Textual's own widgets' keys there, then every other group), readable at 80 columns without scrolling
sideways."""

from __future__ import annotations

from pathlib import Path

from textual.containers import VerticalScroll

from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tuillm.core.settings import Config
from tuillm.tui import keymap
from tuillm.tui.screens.help import HelpScreen


@run_async
async def test_help_lists_the_whole_table_here_first(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        active_ids = {a.binding.id for a in app.screen.active_bindings.values() if a.binding.id}
        focused = app.focused
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows
        assert sorted(row.binding_id for row in rows if row.binding_id) == sorted(keymap.by_id())  # each once
        here = [row for row in rows if row.here]
        assert rows[: len(here)] == here  # what works here comes first
        assert {row.where for row in here} >= {"Models pane", "Everywhere", "table"}, focused  # DataTable's too
        assert active_ids <= {row.binding_id for row in here}
        refresh = next(row for row in rows if row.description.startswith("Refresh"))
        assert (refresh.keys, refresh.where, refresh.here) == ("Ctrl+R", "Models pane", True)
        chat_new = next(row for row in rows if row.where == "Chat pane" and row.description.startswith("New"))
        assert (chat_new.keys, chat_new.here) == ("Ctrl+N", False)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@run_async
async def test_help_shows_the_overridden_keys(tmp_path: Path) -> None:
    config = Config(keys={"models.refresh": "f8", "chat.focus_list": "f10"})  # the second by its old id
    app = make_app([tmp_path], config=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        rows = app.screen.rows
        assert next(r for r in rows if r.where == "Models pane" and r.description.startswith("Refresh")).keys == "F8"
        assert next(r for r in rows if r.where == "Chat pane" and r.description.startswith("Chats")).keys == "F10"


@run_async
async def test_help_reads_at_80_columns_without_scrolling_sideways(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        scroll = app.screen.query_one("#help-scroll", VerticalScroll)
        assert app.focused is scroll
        assert scroll.max_scroll_x == 0 and scroll.region.right <= 80
        assert scroll.max_scroll_y > 0  # the long table scrolls down instead
        # The longest description is there whole (wrapped), not cut at the edge.
        longest = max(app.screen.rows, key=lambda row: len(row.description)).description
        drawn = " ".join(str(line.text) for w in app.screen.query(".help-rows") for line in w.render_lines(
            w.region.reset_offset))
        assert " ".join(longest.split()[-3:]) in " ".join(drawn.split())
        before = scroll.scroll_y
        await pilot.press("pagedown")
        assert scroll.scroll_y > before
