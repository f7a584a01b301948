"""Snapshots of the Chat pane at 60x20, 80x24 and 120x40: a chat with a few messages after a reply on the fake
backend (so the status line holds model, context and speed), the list hidden below 90 columns and shown at 120;
and at 60x20 the list brought back with Ctrl+L. Regenerate with
``pytest tests/tui/snapshots/test_chat_layout.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

from tests.tui.app_helpers import make_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.snapshots.test_chat import chat_shown, steady_cursors, until
from tuillm.core.chat.store import ChatStore
from tuillm.tui.app import TuillmApp

LAYOUT_SIZES = [(60, 20), (80, 24), (120, 40)]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    with ChatStore() as store:
        store.add_message(store.create_chat("Lighthouse story").id, "user", "Tell me a story.")
        chat = store.create_chat("Reversing lists and tuples in Python, with examples and timings")
        store.add_message(chat.id, "user", "How do I reverse a list?")
        store.add_message(chat.id, "assistant", "Use `items[::-1]`, or `items.reverse()` to do it in place.",
                          stats={"generated_tokens": 18, "tokens_per_s": 31.5, "finish_reason": "stop"})
    return make_app([Path("models")], chat_backend=FakeBackend)


async def replied(pilot: Pilot) -> None:
    """The stored chat shown, then one more question answered (the status line then has context and speed)."""
    pane = pilot.app.query_one("#pane-chat")
    await chat_shown(pilot)
    pilot.app.query_one("#chat-prompt", TextArea).text = "And a tuple?"
    await pilot.press("enter")
    await until(pilot, lambda: pane.last_stats is not None and not pane.busy)
    await until(pilot, lambda: len(pane.query("MessageBubble")) == 4)
    steady_cursors(pilot)


@pytest.mark.parametrize("size", LAYOUT_SIZES, ids=[f"{w}x{h}" for w, h in LAYOUT_SIZES])
def test_chat_pane_layout(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=replied)


def test_chat_list_brought_back_at_60x20(snap_compare, app: TuillmApp) -> None:
    async def run(pilot: Pilot) -> None:
        await replied(pilot)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id == "chat-list")
        await pilot.pause(0.1)  # the header is fitted to the narrower column after the next layout
        await pilot.pause()
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=(60, 20), run_before=run)
