"""The one event vocabulary the core uses to report on long work; both front ends render it.

A job takes an ``emit: Callable[[Event], None]`` and calls it; the CLI draws lines or a progress bar, the TUI
posts the events as messages from its worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """``done`` out of ``total`` units of ``stage`` (total 0: unknown)."""

    stage: str
    done: float
    total: float
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class Log:
    message: str
    level: str = "info"  # "info" | "warning" | "error"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    value: float
    step: int = 0


Event = Progress | Log | Metric
Emit = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The emit to pass when nobody listens."""


class Cancelled(Exception):
    """Raised inside a job when its cancel flag was set; the job cleans up before it propagates."""


def cancellable(emit: Emit, cancel: threading.Event | None) -> Emit:
    """``emit`` that raises ``Cancelled`` once ``cancel`` is set: a job whose slow parts take no cancel flag of their
    own (a GGUF base dequantized, LoRA pairs written) stops at its next event, its writer's cleanup removing the
    file in progress."""
    if cancel is None:
        return emit

    def checked(event: Event) -> None:
        if cancel.is_set():
            raise Cancelled()
        emit(event)

    return checked
