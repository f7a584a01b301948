"""How long a run is and how fast it learns: steps from the data and the settings, the learning-rate schedule, and
the duration text of the progress lines."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuillm.core.train.options import TrainConfig


@dataclass(frozen=True)
class Plan:
    """A run's length: micro-batches per epoch, optimizer steps (per epoch and in all), warmup steps."""

    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, config: TrainConfig, n_examples: int) -> Plan:
        n_micro = math.ceil(n_examples / config.batch_size)
        total = config.max_steps or max(1, math.ceil(config.epochs * n_micro / config.grad_accum))
        warmup = int(config.warmup * total) if config.warmup < 1 else int(config.warmup)
        return cls(n_micro, math.ceil(n_micro / config.grad_accum), total, warmup)


def lr_at(step: int, total: int, base_lr: float, schedule: str, warmup_steps: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    span = max(1, total - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return base_lr * (1.0 - progress)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def format_duration(seconds: float) -> str:
    """``1m05s``: the ETA and run times of the progress lines (the front ends show the same)."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
