"""Snapshots of the Chat pane (80x24 and 120x40) on the fake backend: a stored chat, a streamed reply, and the
chat options, rename and confirm-delete dialogs.

Everything on screen is fixed: the backend is ``tests.tui.fake_backend.FakeBackend`` (fixed tokens, tokens/s and
context figures), the memory figures are ``make_app``'s, the app runs in its temporary folder with a relative
model folder, and cursors do not blink (a blink's phase depends on how long a run took). Regenerate with
``pytest tests/tui/snapshots/test_chat.py --snapshot-update`` and look at the SVG.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from tests.tui.app_helpers import make_app
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.app import TuillmApp

SIZES = [(80, 24), (120, 40)]
WAIT_STEPS = 2000  # bounds on waiting, only so that a broken screen fails instead of hanging
REPLY = ("Use slicing:\n\n```python\nitems[::-1]\n```\n\nor `reversed(items)` for an iterator.")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    return make_app([Path("models")], chat_backend=FakeBackend)


def store_chats() -> None:
    """An older chat with one message, and the newest one with a question and its answer."""
    with ChatStore() as store:
        older = store.create_chat("Lighthouse story")
        store.add_message(older.id, "user", "Tell me a story.")
        chat = store.create_chat("Python one-liner")
        store.add_message(chat.id, "user", "How do I reverse a list in Python?")
        store.add_message(chat.id, "assistant", REPLY,
                          stats={"generated_tokens": 21, "tokens_per_s": 31.5, "finish_reason": "stop"})


async def until(pilot: Pilot, ready: Callable[[], bool]) -> None:
    for _ in range(WAIT_STEPS):
        if ready():
            break
        await pilot.pause(0.01)
    await pilot.pause()


def steady_cursors(pilot: Pilot) -> None:
    for widget in pilot.app.screen.query("TextArea, Input"):
        if isinstance(widget, TextArea | Input):
            widget.cursor_blink = False


async def chat_shown(pilot: Pilot) -> None:
    pane = pilot.app.query_one("#pane-chat")
    expected = len(pane.store.messages(pane.chat_id)) if pane.chat_id else 0
    await until(pilot, lambda: len(pane.query("MessageBubble")) == expected)
    steady_cursors(pilot)


def then(*keys: str, screen: str) -> Callable[[Pilot], Awaitable[None]]:
    """The stored chat shown, then ``keys``, until the screen named ``screen`` is up."""

    async def run(pilot: Pilot) -> None:
        await chat_shown(pilot)
        await pilot.press(*keys)
        await until(pilot, lambda: type(pilot.app.screen).__name__ == screen)
        steady_cursors(pilot)

    return run


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_stored_chat(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    store_chats()
    assert snap_compare(app, terminal_size=size, run_before=chat_shown)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_streamed_reply(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    """A new chat's first message: the demo model loads (on the fake) and the reply streams in, token by token."""

    async def send(pilot: Pilot) -> None:
        pane = pilot.app.query_one("#pane-chat")
        await chat_shown(pilot)
        pilot.app.query_one("#chat-prompt", TextArea).text = "How do I reverse a list in Python?"
        await pilot.press("enter")
        await until(pilot, lambda: pane.last_stats is not None and not pane.busy)
        await until(pilot, lambda: len(pane.query("MessageBubble")) == 2)
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=send)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_options_dialog(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    store_chats()
    assert snap_compare(app, terminal_size=size, run_before=then("ctrl+o", screen="ChatOptionsScreen"))


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_rename_dialog(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    store_chats()
    assert snap_compare(app, terminal_size=size, run_before=then("ctrl+l", "r", screen="RenameScreen"))


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_confirm_delete_dialog(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    store_chats()
    assert snap_compare(app, terminal_size=size, run_before=then("ctrl+l", "d", screen="ConfirmScreen"))
