"""A question about a job that has ended does not stay behind: Esc's "Stop …?" asked, then Ctrl+Q's question over
it, then the job ends. Esc's question stayed under Ctrl+Q's (seen through its backdrop), and after "n" it was back,
its answer doing nothing; Ctrl+Q's question still offered to stop the job that had ended.

The jobs are test_esc_asks' stand-ins, started by the panes' real Start and ended on demand (``FINISH``).
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Label

from tests.tui.app_helpers import make_app, run_async, until
from tests.tui.chat_helpers import record_notifications
from tests.tui.panes.test_esc_asks import FINISH, _start_conversion, _start_training, stand_in_jobs  # noqa: F401
from tuillm.core.serve.server import ServeOptions
from tuillm.tui.app import TuillmApp
from tuillm.tui.app_quit import quit_question
from tuillm.tui.jobs import run_job
from tuillm.tui.screens.confirm import ConfirmScreen


class OtherDone(Message):
    """Another job's result, which no pane handles."""


def _questions(app: TuillmApp) -> list[str]:
    """The questions on the screen stack, bottom first."""
    return [str(screen.query_one(".dialog-title", Label).content) for screen in app.screen_stack
            if isinstance(screen, ConfirmScreen)]


def _drawn(app: TuillmApp) -> str:
    """The screen's text as drawn, the screens under the top dialog included (seen through its backdrop)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", app.export_screenshot()).replace("&#160;", " "))


async def _esc_then_quit(pilot: Pilot, stop: str, quit_: str) -> None:
    app = pilot.app
    await pilot.press("escape")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "Esc's question")
    await pilot.press("ctrl+q")
    await until(pilot, lambda: len(_questions(app)) == 2, "Ctrl+Q's question over it")
    questions = _questions(app)
    assert questions[0].startswith(stop) and questions[1] == quit_, questions


@run_async
async def test_a_conversion_that_ends_under_the_quit_question_leaves_no_question(
        tmp_path: Path, demo_gguf: Path, stand_in_jobs: None) -> None:  # noqa: F811
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_conversion(pilot, demo_gguf)
        await _esc_then_quit(pilot, "Stop the conversion?",
                             "Quit now? This stops a conversion (the file being written is removed).")
        FINISH.set()
        await until(pilot, lambda: not pane.running, "the conversion to end")
        # Esc's question is gone from under Ctrl+Q's, which no longer offers to stop the conversion.
        await until(pilot, lambda: len(app.screen_stack) == 2, "Esc's question to go")
        assert _questions(app) == ["Quit now? Nothing is running any more."]
        await pilot.pause()
        drawn = _drawn(app)
        assert "Nothing is running any more" in drawn and "Stop the" not in drawn and "This stops" not in drawn
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and len(app.screen_stack) == 1 and not pane._cancel.is_set()
        assert app.focused is not None and pane in app.focused.ancestors_with_self  # the pane's keys work


@run_async
async def test_a_training_that_ends_under_the_quit_question_leaves_no_question(
        tmp_path: Path, stand_in_jobs: None) -> None:  # noqa: F811
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_training(pilot, tmp_path)
        await _esc_then_quit(pilot, "Stop training after this step?",
                             "Quit now? This stops training (a checkpoint is saved).")
        FINISH.set()  # the stand-in training ends by failing
        await until(pilot, lambda: pane.job is None, "the training to end")
        await until(pilot, lambda: len(app.screen_stack) == 2, "Esc's question to go")
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and len(app.screen_stack) == 1 and not pane.cancel_event.is_set()
        # Keys reach the pane again, on no stale dialog: Ctrl+S starts the next training.
        FINISH.clear()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: pane.job is not None, "the next training")
        assert len(app.screen_stack) == 1 and seen == ["Train failed: the stand-in failed"]


@run_async
async def test_the_quit_question_stays_while_its_job_runs(tmp_path: Path, demo_gguf: Path,
                                                         stand_in_jobs: None) -> None:  # noqa: F811
    """Another job's end (a pane's catalog, a header read) changes nothing."""
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_conversion(pilot, demo_gguf)
        await _esc_then_quit(pilot, "Stop the conversion?",
                             "Quit now? This stops a conversion (the file being written is removed).")
        other = run_job(pane, "other", lambda _emit: None, lambda _result: OtherDone())  # starts and ends meanwhile
        await until(pilot, lambda: other.is_finished, "the other job")
        for _ in range(3):
            await pilot.pause()
        assert len(_questions(app)) == 2 and pane.running
        await pilot.press("n")  # Ctrl+Q's question: no
        await pilot.pause()
        await pilot.press("y")  # Esc's, still there and still meant: the conversion stops
        await until(pilot, lambda: not pane.running, "the conversion to stop")
        assert pane._cancel.is_set() and len(app.screen_stack) == 1


@run_async
async def test_the_quit_question_follows_the_server(tmp_path: Path, demo_gguf: Path,
                                                   stand_in_jobs: None) -> None:  # noqa: F811
    """The server started and stopped under Ctrl+Q's question, as a job's end does: the question said "This stops the
    server" after it had stopped (and, had it started meanwhile, never said that quitting stops it)."""
    conversion = "a conversion (the file being written is removed)"
    app = make_app([tmp_path])
    app.serve_options = ServeOptions(port=0)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _start_conversion(pilot, demo_gguf)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: _questions(app) == [f"Quit now? This stops {conversion}."], "Ctrl+Q's question")
        app.action_start_server()
        await until(pilot, lambda: app.server_url is not None, "the server to start")
        served = f"Quit now? This stops {conversion} and the server at {app.server_url} (its clients are cut off)."
        await until(pilot, lambda: _questions(app) == [served], "the question to name the server", steps=100)
        app.action_stop_server()
        await until(pilot, lambda: app.server_url is None, "the server to stop")
        await until(pilot, lambda: _questions(app) == [f"Quit now? This stops {conversion}."], "the server gone",
                    steps=100)
        await pilot.pause()
        drawn = _drawn(app)
        assert "the server at" not in drawn and "This stops a conversion" in drawn
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and len(app.screen_stack) == 1 and pane.running
        FINISH.set()
        await until(pilot, lambda: not pane.running, "the conversion to end")


def test_the_quit_question_names_what_quitting_stops() -> None:
    assert quit_question(["training (a checkpoint is saved)", "the server at http://x (its clients are cut off)"]) \
        == "Quit now? This stops training (a checkpoint is saved) and the server at http://x (its clients are cut off)."
    assert quit_question([]) == "Quit now? Nothing is running any more."
