"""Snapshots of attaching and importing in the Chat pane (fake backend, fixed files): the ``@`` completion list
above the prompt at 60x20 and 80x24, and the import dialog. Regenerate with
``pytest tests/tui/snapshots/test_chat_attach.py --snapshot-update`` and look at the SVG."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.app_helpers import make_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.snapshots.test_chat import chat_shown, steady_cursors, store_chats, until
from tuillm.tui.app import TuillmApp
from tuillm.tui.widgets.path_complete import PathCompletions

SIZES = [(60, 20), (80, 24)]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    for name in ("notes.md", "notes_2024.md", "report.log"):
        Path(name).write_text("text\n", encoding="utf-8")
    Path("src").mkdir()
    return make_app([Path("models")], chat_backend=FakeBackend)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_at_completion_list(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    store_chats()

    async def typing(pilot: Pilot) -> None:
        await chat_shown(pilot)
        pilot.app.query_one("#chat-prompt").focus()
        await pilot.press(*"Summarize @report.log and @no")
        await until(pilot, lambda: len(pilot.app.query(PathCompletions)) == 1)
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=typing)


def test_import_dialog(snap_compare, app: TuillmApp) -> None:
    store_chats()

    async def opened(pilot: Pilot) -> None:
        await chat_shown(pilot)
        pilot.app.query_one("#pane-chat").action_import_chat()
        await until(pilot, lambda: bool(pilot.app.screen.query("#import-chat-input")))
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=opened)
