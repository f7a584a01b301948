"""How the writers report progress: one plain callback, called with a ``ConvertProgress`` after every tensor.

An exception the callback raises (a cancel) stops the writer; its temporary file is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConvertProgress:
    """Reported after every tensor written (and once per stage change)."""

    stage: str  # "convert" | "quantize"
    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes_done / 1e6 / self.seconds if self.seconds > 0 else 0.0


ProgressFn = Callable[[ConvertProgress], None]
