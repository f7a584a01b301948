"""Run a core job in a Textual thread worker and hear from it through typed messages.

Every pane had the same plumbing: start a worker, forward the core's events, catch ``Cancelled`` and errors, post
"finished". ``run_job`` is that plumbing once. The job is a callable taking the core's ``emit``; while it runs each
event arrives as ``JobProgress``; then exactly one of: the pane's own result message (built by ``done`` from the
job's typed return value), ``JobCancelled``, or ``JobFailed`` with the error's one line; after it, ``JobEnded``, which
bubbles up to the app (it closes the questions about work that has ended). ``name`` tells a pane's handlers which of
its jobs spoke; results never travel as ``Any``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from textual.message import Message
from textual.widget import Widget
from textual.worker import Worker

from tuillm.core.errors import error_text
from tuillm.core.events import Cancelled, Emit, Event

R = TypeVar("R")


class JobProgress(Message):
    """A core event (Progress, Log, Metric) of a running job, posted from its worker thread."""

    def __init__(self, name: str, event: Event) -> None:
        super().__init__()
        self.name = name
        self.event = event


class JobCancelled(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class JobFailed(Message):
    def __init__(self, name: str, error: str) -> None:
        super().__init__()
        self.name = name
        self.error = error  # one line, ready to show


class JobEnded(Message):
    """Posted after a job's last message, however it ended: by then its owner has handled that message (its own state
    says the job is over). It bubbles to the app, which withdraws the questions that no longer stand (``app_quit``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def run_job(owner: Widget, name: str, job: Callable[[Emit], R], done: Callable[[R], Message], *,
            exclusive: bool = True) -> Worker[None]:
    """Runs ``job(emit)`` on a thread worker of ``owner`` (group ``name``) and posts its messages to ``owner``."""

    def emit(event: Event) -> None:
        owner.post_message(JobProgress(name, event))  # thread-safe; does not wait for the event loop

    def body() -> None:
        try:
            result = job(emit)
        except Cancelled:
            owner.post_message(JobCancelled(name))
        except Exception as exc:  # a TuillmError's line, or a bug's in one line: the app keeps running
            owner.post_message(JobFailed(name, error_text(exc)))
        else:
            owner.post_message(done(result))
        finally:
            owner.post_message(JobEnded(name))

    return owner.run_worker(body, name=name, group=name, thread=True, exclusive=exclusive, exit_on_error=False)
