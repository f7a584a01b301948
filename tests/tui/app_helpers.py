"""Shared set-up for the TUI tests: an app whose machine figures are fixed, so screens are reproducible."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from tuillm.core.settings import Config
from tuillm.tui.app import PANES, TuillmApp
from tuillm.tui.widgets.status_line import MemorySample

GIB = 2**30
FIXED_SAMPLE = MemorySample(used=3 * GIB, total=16 * GIB, rss=150 * 2**20)


def make_app(model_dirs: list[Path], config: Config | None = None, **kwargs) -> TuillmApp:
    kwargs.setdefault("available_ram", 12 * GIB)
    kwargs.setdefault("memory_probe", lambda: FIXED_SAMPLE)
    kwargs.setdefault("status_interval", 0)
    return TuillmApp(config or Config(), model_dirs=model_dirs, **kwargs)


async def panes_ready(pilot: Pilot) -> None:
    """Until every pane is mounted with its widgets: the app composes only the first before its first frame and
    mounts the others one a frame after it, so a test that reaches another pane at once waits here first."""
    for spec in PANES:
        await pilot.app.pane(spec.id)


async def wait_for_catalog(pilot: Pilot) -> None:
    """Until the discovery worker has finished and its message has filled the table."""
    app = pilot.app
    await panes_ready(pilot)  # the Models pane starts its discovery as it mounts
    await app.workers.wait_for_complete()
    await pilot.pause()
    pane = app.query_one("#pane-models")
    for _ in range(1000):  # the worker is done; its message is a few loop turns away (bounded: never hang)
        if not pane.loading_catalog:
            return
        await pilot.pause()
    raise AssertionError("the Models pane never received the catalog")


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Runs an async test in its own event loop (the suite has no asyncio plugin); fixtures pass through."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def until(pilot: Pilot, ready: Callable[[], object], what: str, *, steps: int = 6000) -> None:
    """Until ``ready()``: a pause and 0.05 s a step, ``steps`` at most, only so that a broken pane fails instead of
    hanging (never a timing assertion)."""
    for _ in range(steps):
        if ready():
            return
        await pilot.pause()
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")
