"""The server log screen as a keyboard user reads it at 60x20: it opens on the newest request (a log of up to a
thousand rows opened on the oldest, the newest one page after page below), follows new requests while the cursor
is on the newest, and leaves the cursor where the user took it to read an older one; every column but the request
is in view, it keeps no more rows than the app does, and its title follows the server stopping."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.widgets import DataTable, Label

from tests.tui.app_helpers import run_async
from tests.tui.chat_helpers import chat_app
from tuillm.core.serve.guard import RequestRecord
from tuillm.tui.screens.serve_log import COLUMNS, ServeLogScreen
from tuillm.tui.serve_control import ServerState

NARROW = (60, 20)


def record(n: int, status: int = 200) -> RequestRecord:
    return RequestRecord("POST", f"/v1/chat/completions?n={n}", status, 0.5, "demo", 10, 5)


def shown_row(table: DataTable) -> str:
    return str(table.get_row_at(table.cursor_row)[COLUMNS.index("Request")])


def screen_lines(app: App) -> list[str]:
    """The screen's rows as the terminal shows them (text only)."""
    return ["".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips()]


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


@run_async
async def test_every_column_but_the_request_is_in_view_at_60_columns(tmp_path: Path) -> None:
    """The request (cut at 200 characters) came second: at 60 columns Model and Status were some 200 presses of →
    away. The short columns come first, the long ones are cut, and the row under the cursor is shown whole."""
    long = RequestRecord("POST", "/v1/chat/completions?" + "x" * 300, 500, 0.5, "SmolLM2-135M-Instruct-Q4_1", 10,
                         5, error="model failed: out of memory")
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ServeLogScreen([record(1), long], "http://127.0.0.1:8080")
        await app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one(DataTable)
        lines = screen_lines(app)
        header = lines[table.region.y]
        for title in ("Time", "Status", "Tokens", "Seconds", "Model"):
            assert title in header, header
        newest = lines[table.region.y + 2]
        assert "500" in newest and "10+5" in newest and "0.50" in newest and "SmolLM2" in newest, newest
        assert table.scroll_x == 0
        shown = str(screen.query_one("#serve-log-detail").render())
        assert "model SmolLM2-135M-Instruct-Q4_1" in shown and "500 model failed: out of memory" in shown


@run_async
async def test_the_open_log_keeps_no_more_rows_than_the_app(tmp_path: Path) -> None:
    """The app keeps the latest LOG_ROWS requests; the open screen kept every row it was given: a log left open on a
    busy server grew without end. The oldest go; the cursor stays on the row being read, or on the newest."""
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ServeLogScreen([record(n) for n in range(8)], None, limit=5)
        await app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one(DataTable)
        assert table.row_count == 5 and shown_row(table).endswith("n=7")
        await pilot.press("up", "up")  # to n=5, to read it
        assert shown_row(table).endswith("n=5")
        for n in range(8, 10):
            screen.add(record(n))
        await pilot.pause()
        assert table.row_count == 5 and shown_row(table).endswith("n=5")  # the oldest went, not the one read
        assert str(table.get_row_at(0)[COLUMNS.index("Request")]).endswith("n=5")
        screen.add(record(10))  # the row being read goes too: the cursor stays on the top row
        await pilot.pause()
        assert table.row_count == 5 and shown_row(table).endswith("n=6")
        await pilot.press("ctrl+end")  # back to the newest
        screen.add(record(11))
        await pilot.pause()
        assert table.row_count == 5 and shown_row(table).endswith("n=11")  # on the newest: it follows


@run_async
async def test_the_title_follows_the_server_stopping(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        app.server_url = "http://127.0.0.1:8080"
        app.action_server_log()
        await pilot.pause()
        title = app.screen.query_one("#serve-log-title", Label)
        assert "serving at http://127.0.0.1:8080" in str(title.render())
        app.post_message(ServerState(None))  # what the server's worker posts once it has stopped
        await pilot.pause()
        assert "not running" in str(title.render()) and "serving at" not in str(title.render())
        app.post_message(ServerState("http://127.0.0.1:9090"))
        await pilot.pause()
        assert "serving at http://127.0.0.1:9090" in str(title.render())
