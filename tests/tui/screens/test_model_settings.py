"""The Models pane's load settings dialog shows what "auto" threads come to on the machine."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.tui.app_helpers import make_app, run_async, until, wait_for_catalog
from tuillm.core.models.hardware import Hardware, default_threads
from tuillm.core.settings import Config
from tuillm.tui.screens.model_settings import ModelSettingsScreen

HYBRID = Hardware(total_ram=16 * 2**30, available_ram=12 * 2**30, physical_cores=14, logical_cores=20,
                  machine="x86_64", cpu_features=(), gpu_offload=False, gpu_backend=None, performance_cores=6)


async def threads_placeholder(hardware: Hardware | None, config: Config | None = None) -> str:
    app = make_app([], config=config, hardware=hardware)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("e")  # the demo's own load settings
        assert isinstance(app.screen, ModelSettingsScreen)
        return app.screen.query_one("#ms-threads", Input).placeholder


@run_async
async def test_auto_threads_show_their_count(tmp_path: Path) -> None:
    assert await threads_placeholder(HYBRID) == "auto (6)"  # the performance cores of the app's machine reading
    assert await threads_placeholder(None) == f"auto ({default_threads()})"  # this machine
    # A thread count in [load] is shown as it is.
    assert await threads_placeholder(HYBRID, Config(threads=3)) == "3"


@run_async
async def test_gpu_layers_hint_fits_at_60_columns(tmp_path: Path) -> None:
    app = make_app([], hardware=HYBRID)  # a CPU build: "recommended 0 (CPU build)", the longest hint
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("e")
        assert isinstance(app.screen, ModelSettingsScreen)
        field = app.screen.query_one("#ms-n_gpu_layers", Input)
        await until(pilot, lambda: "recommended" in field.placeholder, "the recommendation shown")
        await pilot.pause()
        assert field.placeholder == "auto · recommended 0 (CPU build)"
        assert len(field.placeholder) <= field.content_size.width
