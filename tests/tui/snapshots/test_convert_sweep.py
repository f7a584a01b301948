"""Snapshots of the Convert pane showing a finished quality sweep (table, recommendation, size-vs-KL plot) at 80x24
and 120x40.

The figures are a canned ``SweepResult`` built from the sweep's own dataclasses (the numbers of a real sweep of the
demo checkpoint, rounded), handed to the pane as the worker's message would be: the screen does not change with
this machine's speed. Regenerate with ``pytest tests/tui/snapshots/test_convert_sweep.py --snapshot-update`` and
look at the SVG.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.app_helpers import make_app, panes_ready
from tuillm.core.conversion.sweep import QuantRow, SweepResult
from tuillm.core.models.memory import FITS, TIGHT
from tuillm.tui.panes.convert import ConvertPane

MIB = 1024**2
PARAMS = 134_515_008
NAME = "SmolLM2-135M"
# type, MiB, KL, top-1, ppl ratio, tokens/s, memory MiB, verdict
FIGURES = [
    ("q8_0", 138, 0.0046, 0.959, 1.011, 61.0, 380, TIGHT),
    ("q6_k", 132, 0.0101, 0.930, 0.994, 58.2, 372, FITS),
    ("q5_k_m", 107, 0.0848, 0.826, 1.086, 66.9, 348, FITS),
    ("q4_k_m", 101, 0.0589, 0.857, 1.048, 71.5, 341, FITS),
    ("iq4_xs", 87, 0.1992, 0.756, 1.267, 70.3, 328, FITS),
    ("q3_k_m", 89, 0.1398, 0.787, 1.177, 64.1, 330, FITS),
    ("q2_k", 84, 0.4700, 0.592, 1.494, 73.0, 325, FITS),
]


def canned_result() -> SweepResult:
    rows = [QuantRow(t, f"{NAME}-{t.upper()}.gguf", mib * MIB, PARAMS, kl, top1, ppl, speed, mem * MIB, fit)
            for t, mib, kl, top1, ppl, speed, mem, fit in FIGURES]
    folder = Path("models")
    return SweepResult(folder / NAME, "bf16", rows, "q6_k", 2048, 440 * MIB, 4, 512, None, folder,
                       [folder / r.file_name for r in rows])


async def sweep_shown(pilot: Pilot) -> None:
    await panes_ready(pilot)
    await pilot.press("f4")
    pane = pilot.app.query_one(ConvertPane)
    await pilot.app.workers.wait_for_complete()
    pane.show_sweep(canned_result())
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_convert_pane_with_a_finished_sweep(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            size: tuple[int, int]) -> None:
    monkeypatch.chdir(tmp_path)  # the "To" field shows a relative folder, the same on every machine
    (tmp_path / "models").mkdir()
    assert snap_compare(make_app([Path("models")]), terminal_size=size, run_before=sweep_shown)
