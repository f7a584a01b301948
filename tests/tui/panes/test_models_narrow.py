"""The Models pane where room is short: a long "Could not read" list scrolls from the keyboard, and at 60x20 the
table keeps Name and Fit in sight and the lines under it fit the width."""

from __future__ import annotations

from pathlib import Path

from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import DataTable, Label

from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tuillm.core.models.hardware import Hardware
from tuillm.tui.panes.models import PROBLEMS_TITLE, hardware_text, key_hint


async def models_pane_ready(pilot: Pilot) -> None:
    """F3, then until the catalog (the broken files' problems with it) is shown."""
    await pilot.press("f3")
    await wait_for_catalog(pilot)
    await pilot.pause()


def columns(app) -> list[str]:
    table = app.query_one("#models-table", DataTable)
    return [str(column.label) for column in table.ordered_columns]


def broken_files(folder: Path, count: int) -> None:
    for i in range(count):
        (folder / f"broken-{i:02}.gguf").write_bytes(b"not a model")


@run_async
async def test_a_long_could_not_read_list_scrolls_from_the_keyboard(tmp_path: Path) -> None:
    broken_files(tmp_path, 12)
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await models_pane_ready(pilot)
        box = app.query_one("#models-problems-box", VerticalScroll)
        assert box.display and box.max_scroll_y > 0  # more than it shows
        assert box.border_title == PROBLEMS_TITLE
        # Tab from the table reaches it; the arrow keys and End scroll it to the last file.
        assert app.focused is app.query_one("#models-table")
        await pilot.press("tab")
        assert app.focused is box
        await pilot.press("down")
        await pilot.pause()
        assert box.scroll_y > 0
        await pilot.press("end")
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y


@run_async
async def test_a_short_list_says_no_scroll_hint(tmp_path: Path) -> None:
    broken_files(tmp_path, 1)
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await models_pane_ready(pilot)
        box = app.query_one("#models-problems-box", VerticalScroll)
        assert box.display and box.max_scroll_y == 0 and not box.border_title


@run_async
async def test_at_60x20_the_table_keeps_name_and_fit_and_the_lines_fit(tmp_path: Path) -> None:
    broken_files(tmp_path, 12)
    app = make_app([tmp_path])
    async with app.run_test(size=(60, 20)) as pilot:
        await models_pane_ready(pilot)
        shown = columns(app)
        assert shown[0] == "Name" and shown[-1] == "Fit" and "Est. mem" in shown
        table = app.query_one("#models-table", DataTable)
        assert table.virtual_size.width <= table.scrollable_content_region.width  # nothing cut at the right
        assert table.get_row_at(0)[-1].plain == "fits"
        app.query_one("#models-filter").value = "demo"  # the summary's longest form: "1 of 1 models · …"
        await pilot.pause()
        for selector in ("#models-hardware", "#models-hint", "#models-summary"):
            label = app.query_one(selector, Label)
            assert len(str(label.content)) <= label.content_region.width, selector
        # The list under the table leaves the table its rows.
        assert app.query_one("#models-problems-box").outer_size.height <= 4
        # Back at 80 columns: every column again.
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert columns(app) == ["Name", "Arch", "Params", "Quant", "Size", "Context", "Est. mem", "Fit"]


def test_short_forms_fit_58_columns() -> None:
    gpu = Hardware(total_ram=64 * 2**30, available_ram=40 * 2**30, physical_cores=16, logical_cores=32,
                   machine="x86_64", cpu_features=("avx512f",), gpu_offload=True, gpu_backend="CUDA")
    assert hardware_text(gpu, gpu.available_ram, narrow=True) == (
        "RAM 40.0 GiB free/64.0 GiB · 16 cores avx512f · GPU: CUDA")
    assert len(hardware_text(gpu, gpu.available_ram)) > 58  # the long form would be cut
    assert len(key_hint({}, narrow=True)) <= 58
    assert key_hint({}).startswith("Enter chat")
