"""The app runs ``tuillm serve``: "Start server" from the palette, the address on the status line, a real client's
request in the server log screen, "Stop server"."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import httpx
from textual.widgets import DataTable, Label

from tests.tui.app_helpers import make_app, panes_ready, run_async, until
from tests.tui.chat_helpers import record_notifications
from tuillm.core.serve.server import ServeOptions, Server
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.serve_log import COLUMNS, ServeLogScreen
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
        cells = dict(zip(COLUMNS, (str(c) for c in table.get_row_at(0)), strict=True))
        assert cells["Request"] == "POST /v1/chat/completions" and cells["Model"] == "demo"
        assert cells["Status"] == "200" and cells["Tokens"].endswith("+3")
        assert re.fullmatch(r"\d+\.\d\d \(load \d+\.\d\d\)", cells["Seconds"])  # the first request loaded it
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


def _held_start(monkeypatch) -> tuple[threading.Event, threading.Event, threading.Event]:
    """Server.start held until the test releases it: (entered, release, started)."""
    entered, release, started = threading.Event(), threading.Event(), threading.Event()
    start = Server.start

    def held(self: Server, timeout: float = 30.0) -> None:
        entered.set()
        release.wait(30)
        start(self, timeout)
        started.set()

    monkeypatch.setattr(Server, "start", held)
    return entered, release, started


def _serving_threads() -> int:
    return sum(t.name == "tuillm-serve" and t.is_alive() for t in threading.enumerate())


@run_async
async def test_a_second_start_while_starting_makes_no_second_server(tmp_path: Path, monkeypatch) -> None:
    entered, release, _started = _held_start(monkeypatch)
    app = make_app([tmp_path])
    app.serve_options = ServeOptions(port=0)
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_start_server()
        assert await asyncio.to_thread(entered.wait, 30)
        app.action_start_server()  # the palette still offers "Start server": the first is not listening yet
        assert "Server: the server is starting or stopping: wait for it" in seen
        release.set()
        await until(pilot, lambda: app.server_url is not None, "the server started")
        await asyncio.sleep(0.5)  # a second server, were one starting, would be up by now
        assert _serving_threads() == 1
        app.action_stop_server()
        app.action_stop_server()  # twice: one stop
        await until(pilot, lambda: app.server_url is None, "the server stopped")
        assert _serving_threads() == 0 and seen.count("Server: Server stopped") == 1


@run_async
async def test_quitting_while_the_server_starts_stops_it(tmp_path: Path, monkeypatch) -> None:
    entered, release, started = _held_start(monkeypatch)
    app = make_app([tmp_path])
    app.serve_options = ServeOptions(port=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await panes_ready(pilot)
        app.action_start_server()
        assert await asyncio.to_thread(entered.wait, 30)
        await pilot.press("ctrl+q")  # nothing is served yet: nothing to ask about
    release.set()  # it starts after the app has gone: the worker that started it stops it
    assert await asyncio.to_thread(started.wait, 30)
    for _ in range(200):  # (bounded)
        if _serving_threads() == 0:
            break
        await asyncio.sleep(0.05)
    assert _serving_threads() == 0
