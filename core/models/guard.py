"""The runtime memory guard's policy, declared once: when available RAM is low enough to warn about, and when it is
so low that work must shed load (the Chat pane offers to unload the model or reload it with a smaller context;
training saves a checkpoint and stops) before the kernel's OOM killer takes the whole process.

Both thresholds are a share of total RAM kept between a floor and a ceiling: a share alone would warn far too late on
a 4 GB laptop and far too early on a 512 GB server. They are constants, not settings: a user who wants another
value has the OOM killer's own tuning; one place to change them is here.

Plain functions over figures (no psutil here): front ends sample through ``core.models.hardware.read_memory`` or an
injected probe, so every decision is testable with made-up numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psutil

from tuillm.core.models.hardware import Memory, MemoryProbe
from tuillm.core.text import format_bytes

MIB = 2**20
GIB = 2**30

# Warn (the status line) under 10% of total RAM available, at least 512 MiB and at most 4 GiB.
LOW_SHARE, LOW_MIN, LOW_MAX = 0.10, 512 * MIB, 4 * GIB
# Shed load (chat, training) under 5% of total RAM available, at least 256 MiB and at most 2 GiB.
FLOOR_SHARE, FLOOR_MIN, FLOOR_MAX = 0.05, 256 * MIB, 2 * GIB

Level = Literal["ok", "low", "critical"]


def _bounded(total: int, share: float, low: int, high: int) -> int:
    return int(min(max(total * share, low), high))


def low_threshold(total: int) -> int:
    """Available RAM under which the status line warns."""
    return _bounded(total, LOW_SHARE, LOW_MIN, LOW_MAX)


def floor(total: int) -> int:
    """Available RAM under which chat and training shed load."""
    return _bounded(total, FLOOR_SHARE, FLOOR_MIN, FLOOR_MAX)


def level(memory: Memory) -> Level:
    if memory.available < floor(memory.total):
        return "critical"
    if memory.available < low_threshold(memory.total):
        return "low"
    return "ok"


def sample(probe: MemoryProbe) -> Memory | None:
    """The probe's reading, or None when it cannot say (no /proc in a sandbox, figures that make no sense): the
    guard then stays out of the way rather than stopping work on a guess."""
    try:
        memory = probe()
    except (OSError, psutil.Error):
        return None
    return memory if 0 <= memory.available <= memory.total and memory.total > 0 else None


def describe(memory: Memory) -> str:
    """The figures every guard message starts with, e.g. "available memory is 200 MiB of 16.0 GiB (the floor is
    819 MiB)"."""
    return (f"available memory is {format_bytes(memory.available)} of {format_bytes(memory.total)} "
            f"(the floor is {format_bytes(floor(memory.total))})")


@dataclass
class CriticalWatch:
    """Edge detection for acting once per drop: ``crossed`` is True the first time memory is critical, then not
    again until it has recovered to "ok" (not merely "low": hovering around the floor must not ask every sample)."""

    armed: bool = True

    def crossed(self, memory: Memory) -> bool:
        now = level(memory)
        if now == "ok":
            self.armed = True
        elif now == "critical" and self.armed:
            self.armed = False
            return True
        return False


# The smallest context a reload offers: below it a chat is hardly useful, unloading is the honest choice.
MIN_CONTEXT = 512


def smaller_context(n_ctx: int) -> int | None:
    """The context a reload offers (half the current one, KV cache halved), or None when it would be under
    ``MIN_CONTEXT``."""
    half = n_ctx // 2
    return half if half >= MIN_CONTEXT else None
