"""The bottom status line: live RAM use of the machine and of this process, and the loaded model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psutil
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label

from tuillm.core.models.metadata import format_bytes
from tuillm.core.text import safe_line

NO_MODEL = "no model loaded"


@dataclass(frozen=True)
class MemorySample:
    used: int  # system RAM in use (total - available: what the user can no longer get)
    total: int
    rss: int  # this process


def sample_memory() -> MemorySample:
    vm = psutil.virtual_memory()
    return MemorySample(used=int(vm.total - vm.available), total=int(vm.total),
                        rss=int(psutil.Process().memory_info().rss))


MemoryProbe = Callable[[], MemorySample]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


class StatusLine(Horizontal):
    """``model_name`` is what the Chat pane sets when it loads or unloads a model (None: nothing loaded)."""

    # init=False: the labels exist only after compose; on_mount takes the first sample.
    model_name: reactive[str | None] = reactive(None, init=False)
    sample: reactive[MemorySample | None] = reactive(None, init=False, always_update=True)

    def __init__(self, probe: MemoryProbe = sample_memory, interval: float = 2.0, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._probe = probe
        self._interval = interval

    def compose(self) -> ComposeResult:
        yield Label("RAM …", id="status-ram")
        yield Label(NO_MODEL, id="status-model", markup=False)

    def on_mount(self) -> None:
        self.refresh_memory()
        if self._interval > 0:
            self.set_interval(self._interval, self.refresh_memory)

    def refresh_memory(self) -> None:
        # psutil reads /proc: well under a millisecond, so the event loop is the right place.
        try:
            self.sample = self._probe()
        except (psutil.Error, OSError):
            self.sample = None

    def set_model(self, name: str | None) -> None:
        self.model_name = name

    def watch_sample(self, sample: MemorySample | None) -> None:
        text = ("RAM unknown" if sample is None else
                f"RAM {_gib(sample.used)}/{_gib(sample.total)} GiB · tuillm {format_bytes(sample.rss)}")
        self.query_one("#status-ram", Label).update(text)

    def watch_model_name(self, name: str | None) -> None:
        # A model's name comes from its file: one safe line, shown as plain text (not markup).
        self.query_one("#status-model", Label).update(f"model: {safe_line(name)}" if name else NO_MODEL)
