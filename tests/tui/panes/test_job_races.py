"""Leaving while a job runs: Ctrl+Q pressed twice fast and answered, and a quit (or Esc's "yes") while the Train
pane exports the adapter, which stopped nothing: the export ran on and its file was written whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.convert.test_lora_to_gguf import make_adapter
from tests.tui.app_helpers import make_app, panes_ready, run_async, until
from tests.tui.panes.test_esc_asks import _start_training, stand_in_jobs  # noqa: F401 - the fixture
from tuillm.tui.panes import train_jobs
from tuillm.tui.panes.train import TrainPane
from tuillm.tui.screens.confirm import ConfirmScreen


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lora")
    base = tiny_random_checkpoint("llama", root / "tiny")
    return base, make_adapter(base, root / "adapter")


@run_async
async def test_ctrl_q_yes_ctrl_q_in_one_burst(tmp_path: Path, stand_in_jobs: None) -> None:  # noqa: F811
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_training(pilot, tmp_path)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y", "ctrl+q")  # the second Ctrl+Q comes while the app quits: no second question
        await pilot.pause()
    await app.workers.wait_for_complete()
    assert app.return_code == 0 and pane.cancel_event.is_set()


@run_async
async def test_an_export_stopped_at_once_writes_nothing(tmp_path: Path, tiny_adapter: tuple[Path, Path]) -> None:
    base, adapter = tiny_adapter
    out_dir = tmp_path / "models"
    app = make_app([out_dir])
    async with app.run_test(size=(80, 24)) as pilot:
        await panes_ready(pilot)
        pane = app.query_one(TrainPane)
        pane.base_path, pane.adapter_dir = base, adapter
        pane.action_export()
        assert pane.job == train_jobs.EXPORT
        assert app.work_in_progress() == ["an export (the file being written is removed)"]
        # What Esc's "y" and the pane's unmount (a quit, a signal) do; before the worker's thread has begun.
        pane.cancel_event.set()
        await until(pilot, lambda: pane.job is None, "the export to end")
        assert str(pane.query_one("#train-stats").content) == "export cancelled"
    await app.workers.wait_for_complete()
    assert [p.name for p in out_dir.iterdir()] == []  # neither the adapter GGUF nor its temporary


def test_each_train_pane_job_is_named_in_words() -> None:
    # "Stop the convert?" and "This stops a export" were said: job names are not nouns of English.
    from tuillm.tui.panes.train_run import cancel_question

    assert [cancel_question(job) for job in (train_jobs.CONVERT, train_jobs.MERGE, train_jobs.EXPORT)] == [
        f"Stop the {noun}? The file being written is removed." for noun in ("conversion", "merge", "export")]
    assert set(train_jobs.NOUNS) == {train_jobs.TRAIN, train_jobs.MERGE, train_jobs.EXPORT, train_jobs.CONVERT}
