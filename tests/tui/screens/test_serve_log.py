"""The server log screen as a keyboard user reads it at 60x20: it opens on the newest request (a log of up to a
thousand rows opened on the oldest, the newest one page after page below), follows new requests while the cursor
is on the newest, and leaves the cursor where the user took it to read an older one."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from tests.tui.app_helpers import run_async
from tests.tui.chat_helpers import chat_app
from tuillm.core.serve.guard import RequestRecord
from tuillm.tui.screens.serve_log import ServeLogScreen

NARROW = (60, 20)


def record(n: int, status: int = 200) -> RequestRecord:
    return RequestRecord("POST", f"/v1/chat/completions?n={n}", status, 0.5, "demo", 10, 5)


def shown_row(table: DataTable) -> str:
    return str(table.get_row_at(table.cursor_row)[1])


@run_async
async def test_the_log_opens_on_the_newest_request_and_follows_it(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ServeLogScreen([record(n) for n in range(40)], "http://127.0.0.1:8080")
        await app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one(DataTable)
        assert table.cursor_row == 39 and shown_row(table).endswith("n=39")
        assert table.scroll_y == table.max_scroll_y > 0  # the newest row is in view
        screen.add(record(40))
        await pilot.pause()
        assert table.cursor_row == 40  # on the newest: it follows


@run_async
async def test_a_new_request_leaves_the_row_being_read(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ServeLogScreen([record(n, 500 if n == 2 else 200) for n in range(5)], None)
        await app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one(DataTable)
        await pilot.press("ctrl+home", "down", "down")  # to the failed request, to read it
        assert shown_row(table).endswith("n=2")
        screen.add(record(5))
        screen.add(record(6))
        await pilot.pause()
        assert table.row_count == 7 and shown_row(table).endswith("n=2")  # the cursor stayed on it


@run_async
async def test_the_server_log_from_the_palette_over_the_log_opens_no_second(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        app.action_server_log()
        await pilot.pause()
        app.action_server_log()  # what the palette's "Server log" does over the open log
        await pilot.pause()
        assert sum(isinstance(s, ServeLogScreen) for s in app.screen_stack) == 1
