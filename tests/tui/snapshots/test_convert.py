"""Snapshots of the Convert pane with a source picked, at 80x24 and 120x40.

Everything on screen is fixed: the test runs in its temporary folder and names the model folder and the source by
relative paths (no random tmp path is drawn), the demo checkpoint gives the same sizes everywhere, and the app's
available RAM and memory figures are fixed (``make_app``). Regenerate with
``pytest tests/tui/snapshots/test_convert.py --snapshot-update`` and look at the SVG.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.checkpoints import demo_hf_checkpoint
from tests.tui.app_helpers import make_app, until
from tuillm.tui.panes.convert import ConvertPane

SOURCE = Path("models") / "smollm2-hf"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    SOURCE.parent.mkdir()
    SOURCE.symlink_to(demo_hf_checkpoint(), target_is_directory=True)
    return SOURCE.parent


async def source_picked(pilot: Pilot) -> None:
    """The Convert pane, the demo checkpoint sent to it (as the Models pane does), q4_k_m and q8_0 ticked."""
    await pilot.press("f4")
    pane = pilot.app.query_one(ConvertPane)
    await until(pilot, lambda: not pane.loading_sources, "the source list")
    pane.use_source(SOURCE)
    await until(pilot, lambda: pane.source is not None, "the source's headers")
    await pilot.press("space", "down", "space")  # the list has the focus, on its first type
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_convert_pane_with_a_source(snap_compare, models: Path, size: tuple[int, int]) -> None:
    assert snap_compare(make_app([models]), terminal_size=size, run_before=source_picked)
