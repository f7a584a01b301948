"""Snapshot of the model picker at 80x24, as it opens by itself when the open chat's model file is gone: the reason,
the models found with their size and fit, the adapter and scale fields. Fixed machine and folders as in
test_models.py. Regenerate with ``pytest tests/tui/snapshots/test_pick_model.py --snapshot-update``."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.snapshots.test_models import FIXED_HARDWARE, MODELS, WAIT_STEPS
from tuillm.core.chat.store import ChatStore
from tuillm.core.settings import Config
from tuillm.tui.app import TuillmApp
from tuillm.tui.screens.pick_model import PickModelScreen


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    MODELS.mkdir()
    write_tiny_gguf(MODELS / "alpha-chat.gguf", name="alpha")
    write_tiny_gguf(MODELS / "beta-base.gguf", name="beta")
    with ChatStore() as store:
        chat = store.create_chat("Haiku about tea")
        store.set_model(chat.id, str(MODELS / "gone-7b.Q4_K_M.gguf"))
        store.add_message(chat.id, "user", "A haiku about tea, please.")
    config = Config(model_dirs=[MODELS], path=Path("tuillm.toml"))
    return make_app([MODELS], config=config, hardware=FIXED_HARDWARE, chat_backend=FakeBackend)


async def picker_listed(pilot: Pilot) -> None:
    for _ in range(WAIT_STEPS):
        screen = pilot.app.screen
        if isinstance(screen, PickModelScreen) and screen.entries:
            break
        await pilot.pause(0.01)
    else:
        raise AssertionError("the picker never listed the models")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_pick_model_for_a_chat_whose_model_is_gone(snap_compare, app: TuillmApp) -> None:
    assert snap_compare(app, terminal_size=(80, 24), run_before=picker_listed)
