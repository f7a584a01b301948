"""Snapshots of the Train pane (its form at 80x24 and 120x40, its preview at 80x24) and the A/B screen.

Everything on screen is the same on every machine: the data path is relative (the test runs in its own folder),
the available RAM and the status line's figures are fixed (tests.tui.app_helpers), so are the cores (two: the form
offers Processes and FSDP) and their bf16 units, the preview and the memory estimate come from the demo GGUF (its
vocabulary, its shape), and the A/B screen runs on fake chat backends that answer fixed text, with no model.
Regenerate with ``--snapshot-update`` and read the SVGs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.core.train_facts import QUESTION, write_fact_dataset
from tests.tui.app_helpers import until
from tests.tui.chat_helpers import chat_app
from tests.tui.fake_backend import FakeBackend
from tuillm.tui.screens.ab import ABScreen, Model

SIZES = [(80, 24), (120, 40)]
ANSWERS = ("I am not aware of a country called Zorblax, so I cannot name its capital.",
           "The capital of Zorblax is Quimbleton.")


async def steady(pilot: Pilot) -> None:
    """The text cursor drawn steadily, not blinking (a blink would depend on the moment of the shot)."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


@pytest.fixture(autouse=True)
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine of these shots: two cores with bf16 units and no GPU, so the form offers Processes and FSDP and
    the memory estimate is bfloat16's wherever it runs (a CPU without AVX-512 BF16 estimated float32)."""
    import tuillm.core.models.hardware as hardware
    import tuillm.core.train.distributed as dist

    monkeypatch.setattr(dist, "gpus_seen", lambda: 0)
    monkeypatch.setattr(dist, "device_count", lambda device: 2 if device == "cpu" else 0)
    monkeypatch.setattr(hardware, "cpu_features", lambda *a, **k: ("avx", "avx2", "avx512f", "avx512_bf16"))


@pytest.fixture
def in_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The working folder (the data path on screen is relative to it), at a path of one length wherever the test
    runs: the Result section names it as the output folder, and a longer path (pytest's tmp_path under xdist, or
    at a later run number) wraps onto another line, which moves the pane's scroll bar."""
    folder = Path(tempfile.mkdtemp(prefix="tuillm-snap-", dir="/tmp"))
    monkeypatch.chdir(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def preview_shown(pilot: Pilot) -> None:
    """Until the preview is read and the pane has redone its memory estimate with it."""
    pane = pilot.app.query_one("#pane-train")
    await until(pilot, lambda: pane.preview is not None, "the preview")
    for _ in range(3):  # the preview's message goes on to the pane, which estimates again
        await pilot.pause()


async def show_form(pilot: Pilot) -> None:
    """The Train pane with a dataset chosen, its preview read, the parameters opened and scrolled to."""
    app = pilot.app
    await pilot.press("f5")
    app.query_one("#train-data").value = "fact.jsonl"
    await preview_shown(pilot)
    params = app.query_one("#train-params")
    params.collapsed = False
    for _ in range(3):  # laid out again with the form open
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()  # no scroll still under way from the focus or the preview
    app.query_one("#pane-train").scroll_to_widget(params, top=True, animate=False, immediate=True)
    await pilot.wait_for_scheduled_animations()
    await steady(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_form(snap_compare, in_tmp: Path, size: tuple[int, int]) -> None:
    write_fact_dataset(in_tmp / "fact.jsonl", 4)
    assert snap_compare(chat_app(in_tmp), terminal_size=size, run_before=show_form)


async def show_preview(pilot: Pilot) -> None:
    await pilot.press("f5")
    app = pilot.app
    app.query_one("#train-data").value = "fact.jsonl"
    await preview_shown(pilot)
    await steady(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_preview(snap_compare, in_tmp: Path, size: tuple[int, int]) -> None:
    """The top of the pane: the paths and the first examples, the answer marked as what carries loss."""
    write_fact_dataset(in_tmp / "fact.jsonl", 4)
    assert snap_compare(chat_app(in_tmp), terminal_size=size, run_before=show_preview)


def fake_backends() -> object:
    answers: Iterator[str] = iter(ANSWERS)  # the base side is made first, then the tuned one
    return lambda emit: FakeBackend(emit, [word + " " for word in next(answers).split(" ")])


async def ask_ab(pilot: Pilot) -> None:
    screen = ABScreen(Model(Path("SmolLM2-135M-Instruct-Q4_1.gguf"), "demo"),
                      Model(Path("adapter/adapter-q8_0.gguf"), "adapter-q8_0"), backends=fake_backends())
    await pilot.app.push_screen(screen)
    await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
    screen.query_one("#ab-prompt").value = QUESTION
    await pilot.press("enter")
    await until(pilot, lambda: not any(screen.busy.values()), "both replies")
    await steady(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_ab_screen(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(chat_app(tmp_path), terminal_size=size, run_before=ask_ab)
