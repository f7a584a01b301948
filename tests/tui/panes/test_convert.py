"""The Convert pane on the real app at 80x24: the demo checkpoint to q8_0 + q4_k_m with reports, listed in Models
at once; cancel leaves no file; a GGUF re-quantizes; bad input is a notification."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Select, SelectionList

from tests.checkpoints import demo_hf_checkpoint
from tests.tui.app_helpers import make_app, run_async, until
from tuillm.convert.types import OUTPUT_TYPES, TYPE_NAMES
from tuillm.core.conversion.plan import estimate_size, open_source
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.screens.confirm import ConfirmScreen


def _models_dir(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    # The demo checkpoint inside the model folder, under its own name: the source list offers it.
    (models / "smollm2-hf").symlink_to(demo_hf_checkpoint(), target_is_directory=True)
    return models


async def _open_pane(pilot: Pilot) -> ConvertPane:
    await pilot.press("f4")
    pane = pilot.app.query_one(ConvertPane)
    await until(pilot, lambda: not pane.loading_sources, "the source list")
    return pane


async def _choose_source(pilot: Pilot, pane: ConvertPane, path: Path) -> None:
    """From the source list by keyboard: open it, move to the entry, Enter."""
    select = pane.query_one("#convert-catalog", Select)
    select.focus()
    await pilot.press("enter")
    await pilot.pause()
    values = [value for _, value in select._options]  # the overlay lists the options in this order
    for _ in range(values.index(str(path))):
        await pilot.press("down")
    await pilot.press("enter")
    await until(pilot, lambda: pane.source is not None and pane.source.path == path, "the source's headers")


async def _tick(pilot: Pilot, pane: ConvertPane, types: list[str]) -> None:
    """Space on each wanted type, moving with the arrow keys."""
    type_list = pane.query_one("#convert-types", SelectionList)
    type_list.focus()
    order = [type_list.get_option_at_index(i).value for i in range(type_list.option_count)]
    await pilot.press("home")
    position = 0
    for t in sorted(types, key=order.index):
        for _ in range(order.index(t) - position):
            await pilot.press("down")
        position = order.index(t)
        await pilot.press("space")
    assert sorted(type_list.selected) == sorted(types)


def _log(pane: ConvertPane) -> str:
    return "\n".join(pane.log_lines)


@pytest.mark.slow
@run_async
async def test_demo_to_q8_0_and_q4_k_m_with_reports(tmp_path: Path) -> None:
    models = _models_dir(tmp_path)
    source_path = models / "smollm2-hf"
    app = make_app([models])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        await _choose_source(pilot, pane, source_path)
        source = open_source(source_path)
        labels = {o.value: str(o.prompt) for o in (pane.query_one("#convert-types", SelectionList)
                                                      .get_option_at_index(i) for i in range(len(OUTPUT_TYPES)))}
        # Each type shows its estimated size and the file it will write, before anything starts.
        assert "smollm2-hf-Q4_K_M.gguf" in labels["q4_k_m"] and "MiB" in labels["q4_k_m"]
        await _tick(pilot, pane, ["q8_0", "q4_k_m"])
        assert pane.query_one("#convert-report").value  # the report is on by default for a model that fits
        await pilot.press("ctrl+s")
        assert pane.running
        await until(pilot, lambda: not pane.running, "the end of the job")

        q8, q4 = models / "smollm2-hf-Q8_0.gguf", models / "smollm2-hf-Q4_K_M.gguf"
        assert sorted(pane.last_written) == sorted([q8, q4])
        # No intermediate left behind: only the source link and the two outputs.
        assert sorted(p.name for p in models.iterdir()) == sorted(["smollm2-hf", q8.name, q4.name])
        for out_type, path in (("q8_0", q8), ("q4_k_m", q4)):
            assert abs(estimate_size(source, out_type) - path.stat().st_size) / path.stat().st_size < 0.01
        log = _log(pane)
        for path in (q8, q4):
            assert f"{path.name} against the original (transformers):" in log
        assert log.count("top-1 agreement") == 2 and log.count("perplexity vs bf16") == 2
        assert "cancelled" not in log and "error" not in log
        # The report was a stage of its own, and the bar reached its end.
        last = pane.last_progress
        assert last is not None and (last.stage, last.done, last.total) == ("report", 4, 4)
        assert str(pane.query_one("#convert-progress").content) == "done: 2 files written"

        # Listed in the Models pane at once, without a manual refresh.
        models_pane = app.query_one("#pane-models")
        table = models_pane.query_one(DataTable)
        await until(pilot, lambda: {str(k.value) for k in table.rows} >= {str(q8), str(q4)}
                     or {Path(str(k.value)).name for k in table.rows} >= {q8.name, q4.name}, "the new rows in Models")


@run_async
async def test_cancel_leaves_no_file(tmp_path: Path) -> None:
    models = _models_dir(tmp_path)
    app = make_app([models])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        await _choose_source(pilot, pane, models / "smollm2-hf")
        await _tick(pilot, pane, ["q8_0", "q4_k_m"])
        await pilot.press("ctrl+s")
        # Escape as soon as the first step has written a few tensors (a cancel flag is checked per tensor).
        await until(pilot, lambda: pane.last_progress is not None and pane.last_progress.done >= 3,
                     "the first tensors")
        # Esc asks first: "n" leaves the job running, "y" stops it.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the question")
        assert "Stop the conversion?" in str(pilot.app.screen.query_one(".dialog-title", Label).content)
        await pilot.press("n")
        assert pane.running and not pane._cancel.is_set()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the question again")
        await pilot.press("y")
        await until(pilot, lambda: not pane.running, "the job to stop")
        assert "cancelled" in _log(pane)
        # Nothing under a final name that was not completed, and no hidden intermediate.
        left = sorted(p.name for p in models.iterdir())
        assert left == sorted(["smollm2-hf", *(p.name for p in pane.last_written)])
        assert len(pane.last_written) < 2


@run_async
async def test_cancel_in_the_report_says_the_files_are_written(tmp_path: Path, demo_gguf: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Esc while the quality report runs: every output is complete by then, and stays. The question and the
    words after it said the file in progress was removed, a conversion cancelled."""
    from tuillm.core.llama import logits

    reached, release = threading.Event(), threading.Event()

    def held(*args, **kwargs):  # the report's first model run waits for the test's cancel
        reached.set()
        release.wait(60)  # bounded: a broken test must not hang
        return real(*args, **kwargs)

    real = logits.llama_logits
    monkeypatch.setattr(logits, "llama_logits", held)
    out = tmp_path / "out"
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        pane.use_source(demo_gguf)
        await until(pilot, lambda: pane.source is not None, "the GGUF's headers")
        pane.query_one("#convert-folder").value = str(out)
        await _tick(pilot, pane, ["q4_0"])
        assert pane.query_one("#convert-report").value
        await pilot.press("ctrl+s")
        await until(pilot, reached.is_set, "the report")
        await until(pilot, lambda: pane.last_progress is not None and pane.last_progress.stage == "report",
                    "the report's progress")
        assert app.work_in_progress() == ["a quality report (every file is written and kept)"]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the question")
        question = str(pilot.app.screen.query_one(".dialog-title", Label).content)
        assert question.startswith("Stop the quality report? Every file is written and is kept")
        await pilot.press("y")
        await until(pilot, pane._cancel.is_set, "the cancel")
        release.set()
        await until(pilot, lambda: not pane.running, "the job to stop")
        written = out / f"{pane.source.name}-Q4_0.gguf"
        assert pane.last_written == [written] and written.is_file()
        assert pane.log_lines[-1] == f"quality report stopped: every file was written and kept ({written.name})"
        assert "removed" not in _log(pane) and "cancelled" not in _log(pane)
        assert str(pane.query_one("#convert-progress", Label).render()) == "report stopped"


@run_async
async def test_requantize_a_gguf(tmp_path: Path, demo_gguf: Path) -> None:
    models = tmp_path / "models"
    out = tmp_path / "out"
    app = make_app([models])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        pane.use_source(demo_gguf)  # what the Models pane's "send to Convert" does
        await until(pilot, lambda: pane.source is not None, "the GGUF's headers")
        assert pane.source.mode == "requantize"
        assert "re-quantize" in str(pane.query_one("#convert-info").render())
        folder = pane.query_one("#convert-folder")
        folder.value = str(out)  # a folder that does not exist yet: created
        await _tick(pilot, pane, ["q4_0"])
        report = pane.query_one("#convert-report")
        assert report.value
        report.focus()
        await pilot.press("space")  # no report this time (the core tests cover the report against a GGUF)
        assert not report.value
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not pane.running, "the end of the job")
        written = out / f"{pane.source.name}-Q4_0.gguf"
        assert pane.last_written == [written] and written.is_file()
        log = _log(pane)
        assert "already quantized" in log  # the demo is Q4_1: the user is told what that costs
        assert f"wrote {written}" in log  # (the report against the input GGUF: tests/core/test_convert_job.py)
        # Listed in Models at once: the folder was not a model folder, the Models pane adds it for this run.
        table = app.query_one("#pane-models").query_one(DataTable)
        await until(pilot, lambda: any(Path(str(k.value)).name == written.name for k in table.rows),
                     "the new row in Models")


@run_async
async def test_bad_input_is_a_notification(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (tmp_path / "notes.txt").write_text("not a model")
    app = make_app([models])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        await pilot.press("ctrl+s")  # nothing chosen yet
        await pilot.pause()
        assert not pane.running and "choose a source" in str(list(app._notifications)[-1].message)
        pane.query_one("#convert-source").value = str(tmp_path / "notes.txt")
        await until(pilot, lambda: "not a GGUF file" in str(pane.query_one("#convert-info").render()),
                     "the problem shown")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not pane.running and "not a GGUF file" in str(list(app._notifications)[-1].message)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@run_async
async def test_every_type_is_offered(tmp_path: Path) -> None:
    """The pane lists exactly the registry's types, in its order, each with its note until a source is chosen."""
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        type_list = pane.query_one("#convert-types", SelectionList)
        options = [type_list.get_option_at_index(i) for i in range(type_list.option_count)]
        assert [o.value for o in options] == list(TYPE_NAMES)
        assert all(str(o.prompt).endswith(OUTPUT_TYPES[o.value].note) for o in options)
