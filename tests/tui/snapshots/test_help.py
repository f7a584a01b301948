"""Snapshots of F1's help at 80x24 and 120x40, over the Chat and Models panes (the keys listed depend on where F1
was pressed). The app runs on the fake chat backend in its temporary folder, with fixed machine figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.app_helpers import make_app, wait_for_catalog
from tests.tui.fake_backend import FakeBackend
from tests.tui.snapshots.test_chat import SIZES, steady_cursors, until
from tuillm.tui.app import TuillmApp


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    return make_app([Path("models")], chat_backend=FakeBackend)


def help_over(*keys: str):
    async def run(pilot: Pilot) -> None:
        await wait_for_catalog(pilot)
        await pilot.press(*keys, "f1")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen")
        steady_cursors(pilot)

    return run


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_help_over_chat(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=help_over())


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_help_over_models(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=help_over("f3"))
