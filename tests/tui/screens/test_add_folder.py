"""The add-a-models-folder dialog (Models, a) against what a user may type: every path that is not a folder is
refused in one notification naming it, and the dialog stays open; none is a traceback."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tests.tui.chat_helpers import record_notifications
from tuillm.tui.screens.add_folder import AddFolderScreen


@run_async
async def test_a_path_the_system_will_not_look_at_is_refused_not_a_crash(tmp_path: Path) -> None:
    # "~models" (a slip for "~/models") names a user there is none of: Path.expanduser raised RuntimeError. A name
    # too long made is_dir raise OSError (as a folder behind EACCES does).
    long = tmp_path / ("x" * 300)
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, AddFolderScreen)
        for typed, why in (("~no-such-user-tuillm/models", "~no-such-user-tuillm/models: no such folder"),
                           (str(long), f"{str(long)[:120]}…: file name too long")):  # the path cut, not the why
            screen.query_one(Input).value = typed
            await pilot.press("enter")
            assert app.screen is screen and seen[-1] == f"Add folder: {why}"
        screen.query_one(Input).value = str(tmp_path)  # a folder is still taken
        await pilot.press("enter")
        assert not isinstance(app.screen, AddFolderScreen)
