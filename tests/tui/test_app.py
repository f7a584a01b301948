"""The app shell and the Models pane, driven with Textual's Pilot at the 80x24 of an SSH session."""

from __future__ import annotations

from functools import partial
from itertools import chain, repeat
from pathlib import Path

from textual.command import CommandPalette
from textual.widgets import DataTable, Footer, Label, TabbedContent
from textual.widgets._toast import Toast

from tests.tui.app_helpers import FIXED_SAMPLE, make_app, panes_ready, run_async, until, wait_for_catalog
from tuillm.core.settings import load_config
from tuillm.tui.app import PANES
from tuillm.tui.screens.help import HelpScreen
from tuillm.tui.widgets.status_line import NO_MODEL, StatusLine

SIZE = (80, 24)


def table_rows(app) -> list[list[str]]:
    table = app.query_one("#models-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def toast_texts(pilot) -> list[str]:
    """The notifications on screen (the toast rack mounts them a refresh after notify())."""
    await pilot.pause()
    return [toast._notification.message for toast in pilot.app.screen.query(Toast)]


@run_async
async def test_shell_shows_demo_model_footer_and_status(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        assert app.current_pane_id() == "chat"  # the app opens ready to chat, as oterm does
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        rows = table_rows(app)
        demo = next(row for row in rows if row[0] == "demo")
        assert demo[1] == "llama"
        assert demo[2] == "135M"
        assert demo[3] == "Q4_1"
        assert demo[5] == "8K"
        assert demo[7] == "fits"  # 135M at 4K context against the fixed 12 GiB
        assert isinstance(app.focused, DataTable)

        footer_keys = {key.key_display for key in app.query_one(Footer).query("FooterKey")}
        assert {"F1", "^q", "^r", "^p"} <= footer_keys
        # The panes' keys are on their tabs (the footer keeps its room for the pane's own keys).
        tabs = app.query_one(TabbedContent)
        assert [str(tabs.get_tab(spec.id).label) for spec in PANES] == ["Chat F2", "Models F3", "Convert F4",
                                                                        "Train F5"]

        status = app.query_one(StatusLine)
        assert str(status.query_one("#status-ram", Label).content) == "RAM 3.0/16.0 GiB · tuillm 150 MiB"
        assert str(status.query_one("#status-model", Label).content) == NO_MODEL
        status.set_model("demo")
        await pilot.pause()
        assert str(status.query_one("#status-model", Label).content) == "model: demo"


@run_async
async def test_status_line_takes_fresh_samples() -> None:
    # The first sample, then the fresh one for every later tick (a slow start may let the interval timer fire too).
    samples = chain([FIXED_SAMPLE], repeat(FIXED_SAMPLE.__class__(used=5 * 2**30, total=16 * 2**30, rss=2**30)))
    app = make_app([], memory_probe=lambda: next(samples))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        status = app.query_one(StatusLine)
        status.refresh_memory()
        await pilot.pause()
        assert str(status.query_one("#status-ram", Label).content) == "RAM 5.0/16.0 GiB · tuillm 1.0 GiB"


@run_async
async def test_pane_keys_focus_the_pane(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        for spec in PANES:
            for key in spec.keys.split(","):
                app.set_focus(None)
                await pilot.press(key)
                assert app.query_one(TabbedContent).active == spec.id
                assert app.focused is not None and spec.id in {a.id for a in app.focused.ancestors_with_self}


@run_async
async def test_palette_opens_and_refreshes_models(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_catalog(pilot)
        first = app.query_one("#pane-models").result
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"refresh models")
        await pilot.pause(0.3)  # the palette searches in a worker; pause lets it list the hit
        await pilot.press("enter")
        await wait_for_catalog(pilot)
        assert not isinstance(app.screen, CommandPalette)
        result = app.query_one("#pane-models").result
        assert result is not first and [e.name for e in result.entries] == [e.name for e in first.entries]
        # The help from the palette lists the keys of the pane underneath, not the palette's own.
        await pilot.press("ctrl+p", *"help: keys")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert any(row.keys == "Ctrl+R" and row.where == "Models pane" and row.here for row in app.screen.rows)


@run_async
async def test_unreadable_files_are_reported_not_fatal(tmp_path: Path, demo_gguf: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a model at all")
    (tmp_path / "empty.gguf").write_bytes(b"")
    truncated = tmp_path / "sub" / "truncated.gguf"
    truncated.parent.mkdir()
    truncated.write_bytes(demo_gguf.read_bytes()[:200_000])
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_catalog(pilot)
        assert app.is_running
        assert [row[0] for row in table_rows(app)] == ["demo"]
        assert any("3 model files could not be read" in text for text in await toast_texts(pilot))
        listing = str(app.query_one("#models-problems").render())
        for path in ("broken.gguf", "empty.gguf", "truncated.gguf"):
            assert path in listing
        assert "3 unreadable" in str(app.query_one("#models-summary", Label).content)
        # The keys still work after the bad files: a refresh reports them again.
        await pilot.press("ctrl+r")
        await wait_for_catalog(pilot)
        assert len(app.query_one("#pane-models").result.problems) == 3


@run_async
async def test_bad_config_file_is_a_notification(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[models\ndirs = 3\n")
    app = make_app([tmp_path], config=load_config(bad))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_catalog(pilot)
        assert any("using defaults" in text for text in await toast_texts(pilot))
        assert [row[0] for row in table_rows(app)] == ["demo"]


@run_async
async def test_fit_column_is_coloured_by_the_estimate(tmp_path: Path) -> None:
    """The demo's real estimate judged against free RAM of twice, just over and half of what it needs."""
    async def fit_cell(available: int) -> tuple[str, str, int]:
        app = make_app([tmp_path], available_ram=available)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for_catalog(pilot)
            need = app.query_one("#pane-models").result.find("demo").estimate.total_bytes
            cell = app.query_one("#models-table", DataTable).get_row_at(0)[-1]
            return cell.plain, str(cell.style), need

    first = await fit_cell(64 * 2**30)
    need = first[2]
    cells = [first[:2]] + [(await fit_cell(available))[:2] for available in (int(need / 0.95), need // 2)]
    assert cells == [("fits", "bold green"), ("tight", "bold yellow"), ("too big", "bold red")]


@run_async
async def test_a_theme_from_the_palette_is_kept(tmp_path: Path) -> None:
    """Picked with the palette's "Theme" (not F9), the theme is saved; the next start uses it."""
    file = tmp_path / "config.toml"
    app = make_app([tmp_path], load_config(file))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        assert not file.exists()  # starting is not a change: nothing written
        await pilot.press("ctrl+p", *"theme")
        await pilot.pause(0.3)  # the palette searches in a worker
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, CommandPalette)  # now the list of themes
        await pilot.press(*"nord")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "nord"
        assert load_config(file).theme == "nord"
        assert any(f"saved to {file}" in text for text in await toast_texts(pilot))
    again = make_app([tmp_path], load_config(file))
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "nord"


def focus_in(app, pane_id: str) -> bool:
    return app.focused is not None and pane_id in {node.id for node in app.focused.ancestors_with_self}


@run_async
async def test_a_click_on_a_tab_shows_its_pane_with_the_focus_in_it(tmp_path: Path) -> None:
    """The focused widget, hidden with the pane left, passes the focus to a sibling hidden too; Textual would then
    show that sibling's pane again (every click on a tab came back to the Chat pane)."""
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await panes_ready(pilot)
        for pane_id in ("models", "convert", "train", "chat", "models"):
            await pilot.click(f"#--content-tab-{pane_id}")
            await until(pilot, partial(focus_in, app, pane_id), f"the focus in {pane_id}")
            for _ in range(5):  # a bounce back would come a few messages later
                await pilot.pause()
            assert app.query_one(TabbedContent).active == pane_id and focus_in(app, pane_id)


@run_async
async def test_the_focus_landing_in_a_hidden_pane_goes_to_the_pane_shown(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await panes_ready(pilot)
        await pilot.press("f3")
        await pilot.pause()
        app.screen.set_focus(app.query_one("#chat-view"))  # as the hidden prompt's blur does
        await until(pilot, lambda: app.focused is not None and app.focused.id == "models-table", "the Models table")
        assert app.query_one(TabbedContent).active == "models"
