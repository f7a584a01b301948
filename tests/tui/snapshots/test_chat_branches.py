"""Snapshots of branches in the Chat pane (80x24): a reply with an alternative (‹2/2›) selected in the messages
view, and an earlier message of yours being edited into a new branch. A stored chat on the fake backend, nothing
loaded; regenerate with ``pytest tests/tui/snapshots/test_chat_branches.py --snapshot-update`` and look at the SVG.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.app_helpers import make_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.snapshots.test_chat import chat_shown, steady_cursors, until
from tuillm.core.chat.store import ChatStore
from tuillm.tui.app import TuillmApp

SIZE = (80, 24)
STATS = {"generated_tokens": 9, "tokens_per_s": 31.5, "finish_reason": "stop"}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    with ChatStore() as store:
        chat = store.create_chat("Name a colour")
        question = store.add_message(chat.id, "user", "Name a colour.")
        store.add_message(chat.id, "assistant", "Red, like a fire engine.", stats=STATS)
        store.add_message(chat.id, "assistant", "Blue, like the sea on a clear day.", stats=STATS,
                          parent=question.id)
        store.add_message(chat.id, "user", "And a fruit?")
    return make_app([Path("models")], chat_backend=FakeBackend)


async def reply_selected(pilot: Pilot) -> None:
    await chat_shown(pilot)
    await pilot.press("shift+tab", "up")  # the messages view, the reply selected
    await until(pilot, lambda: "-selected" in pilot.app.query("MessageBubble")[1].classes)


def test_alternative_selected(snap_compare, app: TuillmApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=reply_selected)


def test_editing_an_earlier_message(snap_compare, app: TuillmApp) -> None:
    async def edit_first(pilot: Pilot) -> None:
        await chat_shown(pilot)
        await pilot.press("shift+tab", "up", "up", "e")
        await until(pilot, lambda: pilot.app.query_one("#pane-chat").editing)
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=edit_first)
