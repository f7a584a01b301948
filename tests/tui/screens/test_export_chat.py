"""The Export chat dialog with hostile paths, driven with Pilot at 60x20: each one it cannot write is one line and
the dialog stays open, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import chat_app, chat_pane, record_notifications
from tuillm.core.chat.store import ChatStore
from tuillm.tui.screens.export_chat import ExportChatScreen


@pytest.mark.parametrize(("name", "problem"), [("x.md\x00y", "it holds a NUL character"),
                                               ("a" * 300 + ".md", "file name too long")])
@run_async
async def test_a_file_name_no_file_can_have_is_refused_in_the_dialog(tmp_path: Path, name: str,
                                                                     problem: str) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Exported")
        store.add_message(chat.id, "user", "Hi")
    app = chat_app(tmp_path)
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id is not None, "the chat open")
        seen = record_notifications(app)
        pane.action_export_chat()
        await until(pilot, lambda: bool(app.screen.query("#export-chat-input")), "the export dialog")
        app.screen.query_one("#export-chat-input").value = str(tmp_path / name)
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, ExportChatScreen)  # still open, to correct the name
        assert seen and seen[-1].startswith("Export: ") and problem in seen[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
