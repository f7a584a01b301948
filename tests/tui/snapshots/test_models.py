"""Snapshots of the Models pane (80x24 and 120x40) and its dialogs: model settings, model details, add folder; and
the Settings screen (80x24).

Everything on screen is fixed: the test runs in its temporary folder and names the model folder by a relative path
(no random tmp path is drawn), the settings file is named relatively too, the hardware line and the free RAM are
fixed (``FIXED_HARDWARE``, ``make_app``), and the models are written by the tests (plus the demo, the same file
everywhere). Regenerate with ``pytest tests/tui/snapshots/test_models.py --snapshot-update`` and look at the SVG.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app, wait_for_catalog
from tests.tui.panes.test_models import tiny_hf_folder
from tuillm.core.models.hardware import Hardware
from tuillm.core.settings import Config, ModelDefaults
from tuillm.tui.app import TuillmApp

MODELS = Path("models")
FIXED_HARDWARE = Hardware(total_ram=16 * 2**30, available_ram=12 * 2**30, physical_cores=8, logical_cores=16,
                          machine="x86_64", cpu_features=("avx", "avx2", "fma", "f16c"), gpu_offload=False,
                          gpu_backend=None)
WAIT_STEPS = 2000  # bounds on waiting, only so that a broken screen fails instead of hanging


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    """Two GGUFs (one with its own context of 2048), an HF checkpoint and the demo; a fixed machine."""
    monkeypatch.chdir(tmp_path)
    MODELS.mkdir()
    write_tiny_gguf(MODELS / "alpha-chat.gguf", name="alpha")
    write_tiny_gguf(MODELS / "beta-base.gguf", name="beta")
    tiny_hf_folder(MODELS / "gamma-hf")
    config = Config(model_dirs=[MODELS], path=Path("tuillm.toml"))
    config.set_defaults_for(MODELS / "beta-base.gguf", ModelDefaults(ctx=2048, kv_type="q8_0"))
    return make_app([MODELS], config=config, hardware=FIXED_HARDWARE)


async def models_shown(pilot: Pilot) -> None:
    await pilot.press("f3")
    await wait_for_catalog(pilot)
    await pilot.pause()


def then(*keys: str, screen: str | None = None) -> Callable[[Pilot], Awaitable[None]]:
    """The Models pane, then ``keys``; until the screen named ``screen`` is up, and its workers done."""

    async def run(pilot: Pilot) -> None:
        await models_shown(pilot)
        await pilot.press(*keys)
        for _ in range(WAIT_STEPS):
            if screen is None or type(pilot.app.screen).__name__ == screen:
                break
            await pilot.pause(0.01)
        else:
            raise AssertionError(f"never: {screen}")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    return run


SIZES = [(80, 24), (120, 40)]
BOTH_SIZES = pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])


@BOTH_SIZES
def test_models_pane(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=models_shown)


@BOTH_SIZES
def test_model_settings_dialog(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    # The rows: demo, alpha-chat, beta-base (with its own settings), gamma-hf.
    assert snap_compare(app, terminal_size=size,
                        run_before=then("down", "down", "e", screen="ModelSettingsScreen"))


@BOTH_SIZES
def test_model_details_dialog(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    # alpha-chat: the demo's path is where its package is installed, different on every machine.
    assert snap_compare(app, terminal_size=size, run_before=then("down", "i", screen="ModelDetailsScreen"))


@BOTH_SIZES
def test_add_folder_dialog(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=then("a", screen="AddFolderScreen"))


@BOTH_SIZES
def test_settings_screen(snap_compare, app: TuillmApp, size: tuple[int, int]) -> None:
    assert snap_compare(app, terminal_size=size, run_before=then("f9", screen="SettingsScreen"))
