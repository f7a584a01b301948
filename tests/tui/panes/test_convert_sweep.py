"""The Convert pane's quality sweep on the real app at 80x24: F8 asks for the types, a real sweep of a tiny
checkpoint runs in a worker, its table and plot replace the type list, the recommendation is highlighted, and
"Keep highlighted" deletes the other files after a confirmation; Esc cancels with the pane's question and leaves
nothing; the form refuses a bad type in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label

from tests.checkpoints import tiny_random_checkpoint
from tests.tui.app_helpers import make_app, panes_ready, run_async, until
from tuillm.core.models.memory import FITS
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.panes.convert_view import SWEEP_CANCEL_QUESTION
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.sweep_dialog import SweepDialog
from tuillm.tui.widgets.kl_plot import CHOSEN, POINT, KLPlot, PlotPoint, plot_lines
from tuillm.tui.widgets.quant_table import QuantTable


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("qwen2", tmp_path_factory.mktemp("ck") / "tiny-qwen")


async def _open_form(pilot: Pilot, tiny: Path, out: Path) -> tuple[ConvertPane, SweepDialog]:
    await panes_ready(pilot)
    await pilot.press("f4")
    pane = pilot.app.query_one(ConvertPane)
    await until(pilot, lambda: not pane.loading_sources, "the source list")
    pane.use_source(tiny)
    await until(pilot, lambda: pane.source is not None, "the source's headers")
    pane.query_one("#convert-folder", Input).value = str(out)
    await pilot.press("f8")
    await until(pilot, lambda: isinstance(pilot.app.screen, SweepDialog), "the sweep form")
    dialog = pilot.app.screen
    assert isinstance(dialog, SweepDialog)
    return pane, dialog


async def _fill(pilot: Pilot, dialog: SweepDialog, types: str) -> None:
    dialog.query_one("#sweep-types", Input).value = types
    dialog.query_one("#sweep-imatrix", Input).value = "none"
    dialog.query_one("#sweep-n_ctx", Input).value = "512"
    await pilot.pause()


@run_async
async def test_a_sweep_shows_its_figures_and_keeps_the_chosen_file(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane, dialog = await _open_form(pilot, tiny, out)
        assert dialog.query_one("#sweep-types", Input).value.startswith("q8_0,q6_k")  # the declared default
        await _fill(pilot, dialog, "q8_0,q4_0")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: pane.sweep_result is not None, "the sweep's figures", steps=12000)  # a whole sweep
        result = pane.sweep_result
        assert result is not None and [r.out_type for r in result.rows] == ["q8_0", "q4_0"]
        assert all(r.fit == FITS for r in result.rows) and result.recommended == "q8_0"  # 12 GiB (make_app)
        table = pane.query_one(QuantTable)
        await pilot.pause()
        assert table.row_count == 2 and table.highlighted_type == "q8_0"  # the recommendation, under the cursor
        assert "★" in str(table.get_row_at(0)[0])
        plot = pane.query_one(KLPlot)
        assert [(p.label, p.chosen) for p in plot.points] == [("q8_0", True), ("q4_0", False)]
        rendered = str(plot.render())
        assert rendered.count(CHOSEN) == 1 and rendered.count(POINT) == 1  # q8_0 marked as the recommendation
        assert "q8_0" in rendered and "q4_0" in rendered
        assert not pane.query_one("#convert-types").display  # the figures take the list's place
        assert "q8_0" in str(pane.query_one("#sweep-recommendation", Label).render())
        assert sorted(p.name for p in out.iterdir()) == ["tiny-qwen-Q4_0.gguf", "tiny-qwen-Q8_0.gguf"]
        # Keep the other one: highlight it, press the button, answer yes.
        table.focus()
        await pilot.press("down")
        assert table.highlighted_type == "q4_0"
        pane.query_one("#sweep-keep").focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "Keep q4_0 and delete 1 file(s): tiny-qwen-Q8_0.gguf?" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: not (out / "tiny-qwen-Q8_0.gguf").exists(), "the deletion")
        assert sorted(p.name for p in out.iterdir()) == ["tiny-qwen-Q4_0.gguf"]
        pane.query_one("#sweep-close").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert not pane.query("#sweep-panel") and pane.query_one("#convert-types").display


@run_async
async def test_esc_cancels_a_sweep_and_leaves_nothing(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane, dialog = await _open_form(pilot, tiny, out)
        await _fill(pilot, dialog, "q8_0,q4_0,q5_0")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: pane.running, "the sweep to start")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the pane's question")
        # What a sweep loses, not what a conversion would (its question said completed files were kept).
        assert str(app.screen.query_one(".dialog-title", Label).content) == SWEEP_CANCEL_QUESTION
        assert app.work_in_progress() == ["a quality sweep (nothing it wrote is kept)"]
        assert str(pane.query_one("#convert-hint", Label).render()) == "Cancel keeps nothing"
        await pilot.press("y")
        await until(pilot, lambda: not pane.running, "the sweep to stop")
        assert not pane.sweeping
        await app.workers.wait_for_complete()
        assert pane.sweep_result is None and not pane.query("#sweep-panel")
        assert "sweep cancelled: nothing was kept" in pane.log_lines
        assert list(out.iterdir()) == []  # the hidden folder went with what was in it


@run_async
async def test_the_form_refuses_a_bad_type_in_one_line(tiny: Path, tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane, dialog = await _open_form(pilot, tiny, tmp_path / "out")
        await _fill(pilot, dialog, "q8_0,q9_z")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is dialog and not pane.running
        error = str(dialog.query_one("#sweep-error", Label).render())
        # The field as the form shows it (the CLI's refusal names its flag, --types).
        assert error.startswith("Types: unknown output type 'q9_z'") and "\n" not in error
        for fields, expected in (({"types": "f16"}, "Types: f16 is not a quant"),
                                 ({"imatrix": str(tmp_path / "no.imatrix")}, "Importance matrix: "),
                                 ({"imatrix": "auto", "calibration": str(tmp_path / "no.txt")}, "Calibration text: "),
                                 ({"n_ctx": "8"}, "Context (tokens): must be a whole number at least 16")):
            await _fill(pilot, dialog, "q8_0")
            for field, text in {"calibration": "", **fields}.items():
                dialog.query_one(f"#sweep-{field}", Input).value = text
            await pilot.press("ctrl+s")
            await pilot.pause()
            error = str(dialog.query_one("#sweep-error", Label).render())
            assert app.screen is dialog and error.startswith(expected) and "--" not in error, error
        await _fill(pilot, dialog, "q8_0")  # the matrix: none
        dialog.query_one("#sweep-calibration", Input).value = str(tiny / "config.json")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert str(dialog.query_one("#sweep-error", Label).render()) == (
            "Calibration text: only with Importance matrix set to auto (it is the text the matrix is computed on)")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, SweepDialog) and not (tmp_path / "out").exists()


def test_the_plot_puts_more_kl_higher_and_more_bits_further_right() -> None:
    points = [PlotPoint("q8_0", 8.6, 0.0046), PlotPoint("q6_k", 8.2, 0.0101, chosen=True),
              PlotPoint("q4_k_m", 6.3, 0.0589), PlotPoint("q2_k", 5.2, 0.47), PlotPoint("zero", 7.0, 0.0)]
    lines = plot_lines(points, 70, 12)
    assert len(lines) == 12 and all(len(line) == 70 for line, _ in lines)
    where = {}
    for row, (line, _) in enumerate(lines):
        for col, ch in enumerate(line):
            if ch in (POINT, CHOSEN):
                where[(row, col)] = ch
    assert len(where) == len(points)  # every point drawn, once
    rows_by_x = [row for row, _ in sorted(where, key=lambda rc: rc[1])]  # left to right: 5.2, 6.3, 7.0, 8.2, 8.6
    assert rows_by_x[0] == 0  # q2_k: the most KL, top row
    assert rows_by_x[2] == 9  # a KL of 0 sits on the floor (the bottom plot row), not off the log scale
    assert rows_by_x[1] < rows_by_x[3] < rows_by_x[4]  # q4_k_m above q6_k above q8_0
    chosen_row = next(row for (row, _), ch in where.items() if ch == CHOSEN)
    line, spans = lines[chosen_row]
    assert spans and any(line[a:b] == "q6_k" for a, b in spans)  # the chosen label is styled
    assert "bits/weight" in lines[-1][0] and "└" in lines[-2][0]
    assert "no figures yet" in plot_lines([], 40, 6)[0][0]
