"""Snapshot of the Download dialog at 80x24: a repository's quants with their fit markers and the choice under the
cursor, from the local Hub (tests/hub_server.py). The machine figures are fixed (``FIXED_HARDWARE``, ``make_app``)
and the Hub's repositories are built the same way every run. Regenerate with
``pytest tests/tui/snapshots/test_download.py --snapshot-update`` and look at the SVG."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.hub_server import FakeHub
from tests.tui.app_helpers import make_app, wait_for_catalog
from tests.tui.snapshots.test_models import FIXED_HARDWARE

WAIT_STEPS = 3000  # bounds on waiting, only so that a broken screen fails instead of hanging


async def quants_listed(pilot: Pilot) -> None:
    await pilot.press("f3")
    await wait_for_catalog(pilot)
    await pilot.press("p", *"smollm2", "enter")
    for table, rows in (("#download-repos", 1), ("#download-files", 3)):
        for _ in range(WAIT_STEPS):
            if pilot.app.screen.query_one(table, DataTable).row_count == rows:
                break
            await pilot.pause(0.01)
        if table == "#download-repos":
            await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_download_dialog_with_quants(snap_compare, hub: FakeHub) -> None:  # noqa: ANN001 - the plugin's fixture
    app = make_app([], hardware=FIXED_HARDWARE)
    assert snap_compare(app, terminal_size=(80, 24), run_before=quants_listed)
