"""Scrollbars show in every theme: Textual's default thumb (the accent at 40% over a near-black track, a contrast of
~1.5) read as none, so a cut-off list, log or help gave no sign of more below (app.tcss colours every one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.containers import VerticalScroll
from textual.theme import BUILTIN_THEMES

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import chat_app
from tests.tui.screens.test_ab import _cell_colour, _contrast
from tuillm.tui.screens.help import HelpScreen


# (The ANSI themes draw with the terminal's own palette: its colours are the user's.)
@pytest.mark.parametrize("theme", sorted(name for name in BUILTIN_THEMES if "ansi" not in name))
@run_async
async def test_a_scrollbar_shows_in_every_theme(tmp_path: Path, theme: str) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.theme = theme
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await pilot.pause()
        scroll = app.screen.query_one("#help-scroll", VerticalScroll)
        assert scroll.max_scroll_y > 0 and scroll.show_vertical_scrollbar  # help is longer than 24 rows
        region = scroll.region
        bar = region.right - 1  # the scrollbar's last column
        colours = {_cell_colour(app, bar, y) for y in range(region.y, region.bottom)}
        assert len(colours) == 2, colours  # a thumb and a track
        assert _contrast(*colours) >= 3, colours
