"""Screen snapshots at 80x24 (pytest-textual-snapshot). Machine figures are fixed so the SVG is the same
everywhere; regenerate with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVG."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from tests.tui.app_helpers import make_app, wait_for_catalog


def test_models_pane(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app([tmp_path]), terminal_size=(80, 24), run_before=wait_for_catalog)


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    async def open_help(pilot: Pilot) -> None:
        await wait_for_catalog(pilot)
        await pilot.press("f1")

    assert snap_compare(make_app([tmp_path]), terminal_size=(80, 24), run_before=open_help)
