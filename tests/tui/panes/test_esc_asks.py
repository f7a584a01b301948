"""Esc never destroys work: stopping a running training and quitting while a conversion or training runs ask
first; "n" (or Esc) leaves the job running. (Convert's own Esc question is in test_convert, on a real conversion.)

The jobs here are stand-ins that run until cancelled, started by the panes' real Start through ``tui.jobs.run_job``:
the questions are about the panes, not the core's work, and a stand-in cannot finish before the test answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Label, SelectionList

from tests.tui.app_helpers import make_app, run_async, until
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Progress
from tuillm.tui.jobs import run_job
from tuillm.tui.panes import convert_jobs, train_jobs
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.panes.train import TrainPane
from tuillm.tui.panes.train_run import RunView
from tuillm.tui.screens.confirm import ConfirmScreen

STAND_IN_S = 60.0  # a stand-in job gives up after this, so a broken test cannot leave a thread behind


FINISH = threading.Event()  # set by a test: the stand-in job ends as if its work were done


def _until_cancelled(cancel: threading.Event, *, fails: bool = False) -> Callable[[Emit], object]:
    """A job that runs until cancelled, or until FINISH: then it succeeds (nothing written), or ``fails``."""

    def job(emit: Emit) -> object:
        emit(Log("working"))
        for _ in range(int(STAND_IN_S / 0.05)):
            if cancel.is_set():
                raise Cancelled()
            if FINISH.is_set():
                if fails:
                    raise TuillmError("the stand-in failed")
                return []
            cancel.wait(0.05)
        raise Cancelled()

    return job


@pytest.fixture
def stand_in_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    def train(owner, config, _settings, cancel, *, force=False) -> None:  # noqa: ANN001 - start_train's
        # Past its first step (Esc's question before it is about the set-up: test_train); it ends by failing: a
        # stand-in has no adapter to report.
        rest = _until_cancelled(cancel, fails=True)

        def job(emit: Emit) -> object:
            emit(Progress("train", 1, 10, "step 1/10"))
            return rest(emit)

        run_job(owner, train_jobs.TRAIN, job, lambda result: train_jobs.Trained(config, result))

    def convert(owner, _src, _outputs, _report, cancel, _written, *, force=False, imatrix=None) -> None:  # noqa: ANN001
        run_job(owner, convert_jobs.CONVERT, _until_cancelled(cancel), convert_jobs.ConversionDone)

    FINISH.clear()
    monkeypatch.setattr(train_jobs, "start_train", train)
    monkeypatch.setattr(convert_jobs, "start_conversion", convert)


def _question(pilot: Pilot) -> str:
    screen = pilot.app.screen
    assert isinstance(screen, ConfirmScreen)
    return str(screen.query_one(".dialog-title", Label).content)


async def _start_conversion(pilot: Pilot, source: Path) -> ConvertPane:
    """The Convert pane running a (stand-in) q8_0 conversion of ``source``."""
    await pilot.press("f4")
    pane = pilot.app.query_one(ConvertPane)
    pane.use_source(source)
    await until(pilot, lambda: pane.source is not None, "the source's headers")
    pane.query_one("#convert-types", SelectionList).select("q8_0")
    await pilot.press("ctrl+s")
    await until(pilot, lambda: pane.running, "the conversion to start")
    return pane


async def _start_training(pilot: Pilot, tmp_path: Path) -> TrainPane:
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    await pilot.press("f5")
    pane = pilot.app.query_one(TrainPane)
    pane.query_one("#train-data").value = str(data)
    pane.query_one("#train-output").value = str(tmp_path / "adapter")
    await pilot.press("ctrl+s")
    await until(pilot, lambda: pane.job == train_jobs.TRAIN and pane.query_one(RunView).stepping, "the first step")
    return pane


@run_async
async def test_esc_asks_before_stopping_training(tmp_path: Path, stand_in_jobs: None) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_training(pilot, tmp_path)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert _question(pilot).startswith("Stop training after this step? A checkpoint is saved")
        await pilot.press("n")
        await pilot.pause()
        assert pane.job == train_jobs.TRAIN and not pane.cancel_event.is_set()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question again")
        await pilot.press("y")
        await until(pilot, lambda: pane.job is None, "the training to stop")
        assert "cancelled" in str(pane.query_one("#train-stats").content)


@run_async
async def test_quit_asks_while_training_runs(tmp_path: Path, stand_in_jobs: None) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_training(pilot, tmp_path)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert _question(pilot) == "Quit now? This stops training (a checkpoint is saved)."
        await pilot.press("ctrl+q")  # again: the one question stays
        assert len(app.screen_stack) == 2
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and pane.job == train_jobs.TRAIN and not pane.cancel_event.is_set()
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question again")
        await pilot.press("y")
    assert pane.cancel_event.is_set()  # the pane's unmount stopped the job


@run_async
async def test_quit_asks_while_a_conversion_runs(tmp_path: Path, demo_gguf: Path, stand_in_jobs: None) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_conversion(pilot, demo_gguf)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert _question(pilot) == "Quit now? This stops a conversion (the file being written is removed)."
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and pane.running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question again")
        await pilot.press("y")
    assert pane._cancel.is_set()


@run_async
async def test_quit_with_nothing_running_does_not_ask(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert not app.is_running and app.return_code == 0


@run_async
async def test_a_job_that_ends_closes_its_question(tmp_path: Path, demo_gguf: Path, stand_in_jobs: None) -> None:
    """The job ends while Esc's question is open: the question goes (there is nothing left to stop)."""
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_conversion(pilot, demo_gguf)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        FINISH.set()
        await until(pilot, lambda: not pane.running, "the conversion to end")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the question to close")
        assert not pane._cancel.is_set()
        assert str(pane.query_one("#convert-progress").content).startswith("done")


@run_async
async def test_a_training_that_ends_closes_its_question(tmp_path: Path, stand_in_jobs: None) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_training(pilot, tmp_path)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        FINISH.set()
        await until(pilot, lambda: pane.job is None, "the training to end")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the question to close")
        assert not pane.cancel_event.is_set()
