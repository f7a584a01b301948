"""The bottom status line: live RAM use of the machine and of this process, and the loaded model.

It is also the memory guard's eye: every sample is judged by ``core.models.guard``. Under the guard's low
threshold the RAM figure turns into a warning (colour and text); the first sample under its floor posts
``StatusLine.MemoryCritical`` once per drop, for the app to shed load (the Chat pane's offer to unload).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Label

from tuillm.core.models import guard
from tuillm.core.models.hardware import Memory
from tuillm.core.text import format_bytes, safe_line

NO_MODEL = "no model loaded"
STATE_RE = re.compile(r" \([^()]*…\)$")  # what the model is doing, after its name: " (loading…)", " (reloading…)"


@dataclass(frozen=True)
class MemorySample:
    used: int  # system RAM in use (total - available: what the user can no longer get)
    total: int
    rss: int  # this process

    @property
    def memory(self) -> Memory:
        return Memory(available=self.total - self.used, total=self.total)


def sample_memory() -> MemorySample:
    vm = psutil.virtual_memory()
    return MemorySample(used=int(vm.total - vm.available), total=int(vm.total),
                        rss=int(psutil.Process().memory_info().rss))


MemoryProbe = Callable[[], MemorySample]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


def ram_text(sample: MemorySample | None, short: bool = False) -> str:
    """The RAM figure: machine and process; under the guard's thresholds, what is left instead of the process.
    ``short`` (a narrow terminal): the machine's figure alone while memory is fine; a warning is never shortened."""
    if sample is None:
        return "RAM unknown"
    used = f"RAM {_gib(sample.used)}/{_gib(sample.total)} GiB"
    level = guard.level(sample.memory)
    if level == "ok":
        return used if short else f"{used} · tuillm {format_bytes(sample.rss)}"
    return f"{used} · {level}: {format_bytes(sample.memory.available)} free"


def model_text(status: str | None, width: int) -> str:
    """The model part of the line in ``width`` columns (0: not laid out, as is). ``status`` is the Chat pane's
    "name · ctx used/size · speed", or "name (loading…)": where it does not fit, the label goes, then "tok/s" becomes
    "t/s", then the name is shortened in its middle (its start and its quant stay); context, speed and what the model
    is doing ("(loading…)", as the header keeps it) are never cut."""
    if not status:
        return NO_MODEL
    full = f"model: {status}"
    if width <= 0 or len(full) <= width:
        return full
    name, *parts = status.split(" · ")
    parts = [part.replace(" tok/s", " t/s") for part in parts]
    rest = "".join(f" · {part}" for part in parts)
    state = STATE_RE.search(name)
    if state is not None:
        name, rest = name[: state.start()], state.group() + rest
    return shorten_middle(name, width - len(rest)) + rest


def shorten_middle(text: str, width: int) -> str:
    """``text`` in ``width`` columns, shortened in its middle: its start and its end (a quant, ".gguf") stay."""
    if len(text) <= width:
        return text
    keep = max(width - 1, 2)
    return f"{text[: (keep + 1) // 2]}…{text[len(text) - keep // 2:]}" if keep > 2 else text[:1] + "…"


class StatusLine(Horizontal):
    """``model_name`` is what the Chat pane sets when it loads or unloads a model (None: nothing loaded)."""

    DEFAULT_CSS = """
    StatusLine #status-ram.-low { color: $text-warning; text-style: bold; }
    StatusLine #status-ram.-critical { background: $error; color: $text; text-style: bold; }
    StatusLine #status-serve { width: auto; margin-left: 1; color: $text-success; }
    """

    class MemoryCritical(Message):
        """Available RAM fell under the guard's floor (posted once per drop; again only after it recovered)."""

        def __init__(self, memory: Memory) -> None:
            super().__init__()
            self.memory = memory

    # init=False: the labels exist only after compose; on_mount takes the first sample.
    model_name: reactive[str | None] = reactive(None, init=False)
    sample: reactive[MemorySample | None] = reactive(None, init=False, always_update=True)

    def __init__(self, probe: MemoryProbe = sample_memory, interval: float = 2.0, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._probe = probe
        self._interval = interval
        self._watch = guard.CriticalWatch()
        # Made here, not in compose: the Chat pane may set the model before this line has composed its children,
        # and updating a label that is not mounted yet is safe where querying for it is not.
        self._ram = Label("RAM …", id="status-ram")
        self._model = Label(NO_MODEL, id="status-model", markup=False)

    def compose(self) -> ComposeResult:
        yield self._ram
        yield self._model

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

    def set_server(self, url: str | None) -> None:
        """Shows the address the app's API server listens on (``tuillm serve``); None hides it."""
        shown = self.query("#status-serve")
        if url is None:
            shown.remove()
        elif shown:
            shown.first(Label).update(f"serving {url}")
        else:
            self.mount(Label(f"serving {url}", id="status-serve", markup=False))
        self.call_after_refresh(self._fit)  # the model's part gives the address its room

    def watch_sample(self, sample: MemorySample | None) -> None:
        label = self._ram
        level = "ok" if sample is None else guard.level(sample.memory)
        label.set_class(level == "low", "-low")
        label.set_class(level == "critical", "-critical")
        self._fit()
        if sample is not None and self._watch.crossed(sample.memory):
            self.post_message(self.MemoryCritical(sample.memory))

    def watch_model_name(self, _name: str | None) -> None:
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Both parts in the line's width: the RAM figure shortens first, then the model's (model_text)."""
        # The server's address, when one runs, is never shortened: the other parts make room for it.
        serving = sum(len(str(label.content)) + 1 for label in self.query("#status-serve").results(Label))
        width = max(self.content_region.width - serving, 1) if self.content_region.width else 0
        # A model's name comes from its file: one safe line, shown as plain text (not markup).
        name = safe_line(self.model_name) if self.model_name else None
        ram = ram_text(self.sample)
        if width and len(ram) + 1 + len(model_text(name, 0)) > width:
            ram = ram_text(self.sample, short=True)
        ram_label = self._ram
        # Laid out again only when the RAM figure's width changes: the model's part takes the rest of the line
        # (1fr), so its text alone never moves anything (it changes twice a second while a reply streams).
        ram_label.update(ram, layout=len(ram) != len(str(ram_label.content)))
        self._model.update(model_text(name, width - len(ram) - 1 if width else 0),
                                                      layout=False)
