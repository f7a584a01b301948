"""How long a run is and how fast it learns and goes: steps from the data and the settings, the learning-rate
schedule, the set-up time and steady-state speed (``Pace``), and the duration text of the progress lines."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from tuillm.core.train.options import TrainConfig


@dataclass(frozen=True)
class Plan:
    """A run's length: micro-batches per epoch, optimizer steps (per epoch and in all), warmup steps, and the
    micro-batches a step accumulates (``accum``: ``grad_accum``, at most an epoch's micro-batches; one step over
    more would train on several epochs of data at once, and a huge value would list billions of them)."""

    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    accum: int

    @classmethod
    def of(cls, config: TrainConfig, n_examples: int) -> Plan:
        n_micro = math.ceil(n_examples / config.batch_size)
        accum = min(config.grad_accum, n_micro)
        total = config.max_steps or max(1, math.ceil(config.epochs * n_micro / accum))
        warmup = int(config.warmup * total) if config.warmup < 1 else int(config.warmup)
        return cls(n_micro, math.ceil(n_micro / accum), total, warmup, accum)

    def summary(self, config: TrainConfig, unit: str) -> str:
        """The plan in words for the run's log; says so where ``grad_accum`` was lowered to an epoch's size."""
        lowered = (f" (--grad-accum {config.grad_accum} lowered to the {self.accum} micro-batches of an epoch)"
                   if self.accum < config.grad_accum else "")
        steps = f"{self.total_steps} step{'' if self.total_steps == 1 else 's'}"
        return f"{steps} ({self.steps_per_epoch} per epoch) of {config.batch_size} x {self.accum} {unit}{lowered}"


# Steps left out of the steady-state speed: the first ones pay for kernel selection, the allocator's growth and
# cold caches (on CPU the first step takes several times a later one).
WARM_STEPS = 2


@dataclass
class Pace:
    """A run's set-up time (from ``began``, when training was asked for, to its first step: loading the model and
    the data) and its speed in tokens/s after the first ``WARM_STEPS`` steps, the speed the rest of the run keeps.
    Until then, and in runs no longer than that, the speed is the one so far (``steady`` says which)."""

    began: float = field(default_factory=time.monotonic)
    start: float | None = None  # the first step began
    warm: tuple[float, int] | None = None  # (time, tokens) at the end of the warm-up steps
    steady: bool = False

    def started(self) -> float:
        self.start = time.monotonic()
        return self.start

    @property
    def setup_s(self) -> float:
        return (self.start if self.start is not None else time.monotonic()) - self.began

    def tokens_per_s(self, steps: int, tokens: int) -> float:
        """The speed after ``steps`` steps of this run that read ``tokens`` tokens in all."""
        now = time.monotonic()
        if self.warm is not None and steps > WARM_STEPS and now > self.warm[0]:
            self.steady = True
            return (tokens - self.warm[1]) / (now - self.warm[0])
        if steps >= WARM_STEPS and self.warm is None:
            self.warm = (now, tokens)
        elapsed = now - (self.start if self.start is not None else self.began)
        return tokens / elapsed if elapsed > 0 else 0.0


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
