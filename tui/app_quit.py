"""Ctrl+Q and the questions about running work: quitting asks first while a job runs, and a question about a job
that has ended does not stay behind.

A mixin for the App (``class TuillmApp(QuitControl, …)``), as ``app_settings`` is. Every job of every pane and dialog
runs on ``tui.jobs.run_job``, whose ``JobEnded`` bubbles up here after the job's own last message: each open
question whose ``stands`` now says no (Esc's "Stop the conversion?") is withdrawn, on top or under Ctrl+Q's
question, and Ctrl+Q's question is reworded to what quitting would stop now. Work that is not a job (the server of
``serve_control``) posts ``WorkChanged`` once it has started or stopped, to the same effect.
"""

from __future__ import annotations

from textual.app import App
from textual.message import Message

from tuillm.tui.jobs import JobEnded
from tuillm.tui.screens.confirm import ConfirmScreen


def quit_question(work: list[str]) -> str:
    """Ctrl+Q's question, naming what quitting stops (``work``, from ``work_in_progress``)."""
    if not work:  # what it would have stopped ended while the question was read
        return "Quit now? Nothing is running any more."
    return f"Quit now? This stops {' and '.join(work)}."


class WorkChanged(Message):
    """What quitting would stop has changed outside the jobs (the server started or stopped). Posted to the app once
    its state says so; the app then brings the questions about running work up to date, as on a job's ``JobEnded``."""


class QuitControl(App[int]):
    """The app's part of quitting."""

    _quit_question: ConfirmScreen | None = None  # Ctrl+Q's question, while it is on screen

    def work_in_progress(self) -> list[str]:
        """What quitting now would stop, each with what stopping loses (the app's, from its panes and server)."""
        raise NotImplementedError

    async def action_quit(self) -> None:
        """Ctrl+Q: with a job running, the user is asked first (quitting stops it; its file in progress is lost)."""
        work = self.work_in_progress()
        if not work:
            self.exit()
        elif self._quit_question is None:  # a second Ctrl+Q leaves the question open

            def answered(yes: bool | None) -> None:
                self._quit_question = None
                if yes:
                    self.exit()

            self._quit_question = ConfirmScreen(quit_question(work))
            self.push_screen(self._quit_question, answered)

    def on_job_ended(self, _message: JobEnded) -> None:
        # The pane has handled the job's own end: its state says what still runs.
        self._review_questions()

    def on_work_changed(self, _message: WorkChanged) -> None:
        self._review_questions()

    def _review_questions(self) -> None:
        """Withdraws the questions that no longer stand; Ctrl+Q's names what quitting stops now."""
        for screen in self.screen_stack:
            if isinstance(screen, ConfirmScreen) and not screen.stands():
                screen.withdraw()
        if self._quit_question is not None:
            self._quit_question.reword(quit_question(self.work_in_progress()))
