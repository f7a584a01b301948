"""Screen snapshots at 80x24 (pytest-textual-snapshot). Machine figures are fixed so the SVG is the same
everywhere; regenerate with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVG."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from tests.tui.app_helpers import make_app, wait_for_catalog
from tuillm.core.chat.store import ChatStore
from tuillm.core.models.hardware import Hardware


async def show_models(pilot: Pilot) -> None:
    await pilot.press("f3")
    await wait_for_catalog(pilot)


async def chat_shown(pilot: Pilot) -> None:
    await wait_for_catalog(pilot)
    pane = pilot.app.query_one("#pane-chat")
    for _ in range(1000):  # the stored chat is drawn a few loop turns after mount (bounded: never hang)
        if len(pane.query("MessageBubble")) == len(pane.store.messages(pane.chat_id)) if pane.chat_id else True:
            break
        await pilot.pause()
    await pilot.pause()


# The Models pane's hardware line, the same on every machine.
FIXED_HARDWARE = Hardware(total_ram=16 * 2**30, available_ram=12 * 2**30, physical_cores=8, logical_cores=16,
                          machine="x86_64", cpu_features=("avx", "avx2", "fma", "f16c"), gpu_offload=False,
                          gpu_backend=None)


def test_models_pane(snap_compare, tmp_path: Path) -> None:
    app = make_app([tmp_path], hardware=FIXED_HARDWARE)
    assert snap_compare(app, terminal_size=(80, 24), run_before=show_models)


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    async def open_help(pilot: Pilot) -> None:
        await chat_shown(pilot)
        await pilot.press("f1")

    assert snap_compare(make_app([tmp_path]), terminal_size=(80, 24), run_before=open_help)


def test_chat_pane(snap_compare, tmp_path: Path) -> None:
    with ChatStore() as store:
        older = store.create_chat("Lighthouse story")
        store.add_message(older.id, "user", "Tell me a story.")
        chat = store.create_chat("Python one-liner")
        store.add_message(chat.id, "user", "How do I reverse a list in Python?")
        store.add_message(chat.id, "assistant", "Use slicing:\n\n```python\nitems[::-1]\n```\n\n"
                          "or `reversed(items)` for an iterator.",
                          stats={"generated_tokens": 21, "tokens_per_s": 31.5, "finish_reason": "stop"})
    assert snap_compare(make_app([tmp_path]), terminal_size=(80, 24), run_before=chat_shown)
