"""The app's garbage-collection policy: what is alive once the app has started is frozen, and released at the end."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.tui.app_helpers import make_app, panes_ready, run_async, until


@run_async
async def test_the_objects_alive_after_start_are_frozen_until_the_app_ends(tmp_path: Path) -> None:
    gc.unfreeze()
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await panes_ready(pilot)
        await until(pilot, lambda: gc.get_freeze_count() > 0, "the objects frozen once every pane is mounted")
        assert gc.get_freeze_count() > 10_000  # the modules and the panes' widgets: full passes skip them
    assert gc.get_freeze_count() == 0  # a process that runs another app (the tests) gets them back
