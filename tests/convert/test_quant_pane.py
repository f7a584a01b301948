"""The Convert pane's importance-matrix row on the real app: a file choice without a file is a notification, and
the choice reaches the real job (a matrix file that does not exist is refused there, in one line, nothing written).
The IQ types in the pane's list come from the registry (tests/tui/panes/test_convert.py checks every one)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Select, SelectionList

from tests.tui.app_helpers import make_app, run_async, until
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.widgets.imatrix_choice import ImatrixChoice


@run_async
async def test_imatrix_choice_reaches_the_job(tmp_path: Path, demo_gguf: Path) -> None:
    out = tmp_path / "out"
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        pane = app.query_one(ConvertPane)
        await until(pilot, lambda: not pane.loading_sources, "the source list")
        pane.use_source(demo_gguf)
        await until(pilot, lambda: pane.source is not None, "the GGUF's headers")
        pane.query_one("#convert-folder").value = str(out)
        types = pane.query_one("#convert-types", SelectionList)
        assert {"iq4_xs", "iq2_xs", "iq1_m"} <= {types.get_option_at_index(i).value for i in range(types.option_count)}
        types.select("q4_k_m")
        choice = pane.query_one(ImatrixChoice)
        assert choice.value is None and not choice.query_one("#imatrix-file").display  # none: no file field
        choice.query_one("#imatrix-mode", Select).value = "file"
        await pilot.pause()
        assert choice.query_one("#imatrix-file").display
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not pane.running and "name the importance matrix file" in str(list(app._notifications)[-1].message)
        choice.query_one("#imatrix-file").value = str(tmp_path / "missing.imatrix")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("missing.imatrix: no such file" in line for line in pane.log_lines) or
                     any("missing.imatrix: no such file" in str(n.message) for n in app._notifications),
                     "the job's refusal")
        await until(pilot, lambda: not pane.running, "the end of the job")
        assert not out.exists() or list(out.iterdir()) == []
        choice.query_one("#imatrix-mode", Select).value = "auto"
        await pilot.pause()
        assert choice.value == "auto" and not choice.query_one("#imatrix-file").display
