"""The app runs ``tuillm serve``: "Start server" from the palette, the address on the status line, a real client's
request in the server log screen, "Stop server"."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from textual.widgets import DataTable, Label

from tests.tui.app_helpers import make_app, run_async, until
from tuillm.core.serve.server import ServeOptions
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.serve_log import ServeLogScreen
from tuillm.tui.serve_control import ServeControl


def _palette_first(app: ServeControl) -> str:
    """The palette's first hit (it searches in a worker), as text; "" while it has none."""
    found = app.screen.query("CommandList")
    hits = found.first() if found else None
    if hits is None or not hits.option_count:
        return ""
    prompt = hits.get_option_at_index(0).prompt  # rich Text or Textual Content: both have .plain
    return prompt if isinstance(prompt, str) else prompt.plain


def _palette_titles(app: ServeControl) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


@run_async
async def test_start_serve_log_and_stop(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    assert isinstance(app, ServeControl)
    app.serve_options = ServeOptions(port=0)
    async with app.run_test(size=(100, 30)) as pilot:
        assert "Start server" in _palette_titles(app) and "Stop server" not in _palette_titles(app)
        await pilot.press("ctrl+p")  # the command palette, as a user starts it
        await pilot.press(*"Start server")
        await until(pilot, lambda: _palette_first(app).startswith("Start server"), "the palette lists it", steps=500)
        await pilot.press("enter")
        await until(pilot, lambda: app.server_url is not None, "the server started")
        url = app.server_url
        assert "Stop server" in _palette_titles(app)
        assert str(app.query_one("#status-serve", Label).render()) == f"serving {url}"
        reply = await asyncio.to_thread(httpx.post, f"{url}/v1/chat/completions", timeout=300, json={
            "model": "demo", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3
        await until(pilot, lambda: len(app.serve_log) == 1, "the request was logged")
        app.action_server_log()
        await pilot.pause()
        assert isinstance(app.screen, ServeLogScreen)
        table = app.screen.query_one(DataTable)
        cells = [str(c) for c in table.get_row_at(0)]
        assert cells[1] == "POST /v1/chat/completions" and cells[2] == "demo" and cells[5] == "200"
        assert cells[3].endswith("+3")
        assert re.fullmatch(r"\d+\.\d\d \(load \d+\.\d\d\)", cells[4])  # the first request loaded the model
        await asyncio.to_thread(httpx.get, f"{url}/v1/models")  # a request while the screen is open: a new row
        await until(pilot, lambda: table.row_count == 2, "the open log took the new request")
        await pilot.press("escape")
        await pilot.press("ctrl+q")  # quitting would stop the server: asked first
        assert isinstance(app.screen, ConfirmScreen) and f"the server at {url}" in app.screen.question
        await pilot.press("escape")  # no: the app and the server stay
        assert app.is_running and app.server_url == url
        app.action_stop_server()
        await until(pilot, lambda: app.server_url is None, "the server stopped")
        assert not app.query("#status-serve")
        assert "Start server" in _palette_titles(app)
