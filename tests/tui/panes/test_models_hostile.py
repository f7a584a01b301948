"""The Models pane against a hostile models folder: file names with escape sequences, newlines and markup are shown
as one plain line each, a name that is not UTF-8 as one that the terminal can take, a loop of links as one more
unreadable file, and the unreadable files are told of once, not at every refresh."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Label, Static

from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tests.tui.chat_helpers import record_notifications
from tuillm.core.settings import load_config
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.model_settings import ModelSettingsScreen

HOSTILE_NAME = "tr\x1b[2Junc\x1b]0;pwned\x07\nnl[b]x.gguf"  # clears the screen, renames the terminal, splits


def _unreadable_notes(seen: list[str]) -> list[str]:
    return [text for text in seen if "could not be read" in text]


@run_async
async def test_unreadable_names_are_one_safe_line_each(tmp_path: Path) -> None:
    (tmp_path / HOSTILE_NAME).write_bytes(b"GGUF\x03\x00")  # truncated: listed under the table
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        text = str(app.query_one("#models-problems", Static).content)
        assert "\x1b" not in text and "\x07" not in text
        heading, *entries = text.split("\n")
        assert heading == "Could not read:"
        assert len(entries) == 1 and entries[0].startswith("tr") and "nl[b]x.gguf: " in entries[0]


@run_async
async def test_unreadable_files_are_told_once_not_at_each_refresh(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a model")
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert _unreadable_notes(seen) == ["Models: 1 model file could not be read (listed below the table)"]
        # A conversion refreshes the pane after each file it writes: the same broken file is not news.
        for _ in range(3):
            await pilot.press("ctrl+r")
            await wait_for_catalog(pilot)
        assert len(_unreadable_notes(seen)) == 1
        # A new unreadable file is.
        (tmp_path / "other.gguf").write_bytes(b"")
        await pilot.press("ctrl+r")
        await wait_for_catalog(pilot)
        assert _unreadable_notes(seen)[1:] == ["Models: 2 model files could not be read (listed below the table)"]
        assert "broken.gguf" in str(app.query_one("#models-problems", Static).content)


@run_async
async def test_a_name_that_is_not_utf8_reaches_the_terminal_as_text_it_can_take(tmp_path: Path) -> None:
    # The byte 0xff in a file name, as Python reads it: a lone surrogate, which the terminal's stream wrote as the
    # six characters "\\udcff" where the table had counted one cell, shifting the row.
    write_tiny_gguf(tmp_path / "bad\udcffname.gguf")
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        table = app.query_one("#models-table", DataTable)
        assert "bad\ufffdname" in [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        await pilot.press("down")  # the advice line names the highlighted model
        assert str(app.query_one("#models-advice", Label).content).startswith("bad\ufffdname: ")
        app.export_screenshot().encode("utf-8")  # raised UnicodeEncodeError: a surrogate in the frame


@run_async
async def test_a_link_to_itself_is_one_unreadable_file_not_a_failed_discovery(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "alpha.gguf")
    (tmp_path / "loop.gguf").symlink_to("loop.gguf")
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert str(app.query_one("#models-summary", Label).content).startswith("2 models · 1 unreadable")
        assert "loop.gguf: Too many levels of symbolic links" in str(app.query_one("#models-problems", Static).content)
        assert not any("discovery failed" in text for text in seen)


@run_async
async def test_a_models_folder_that_cannot_be_asked_about_does_not_fail_the_listing(tmp_path: Path) -> None:
    # The settings file may name one (a name too long, or a folder behind EACCES): is_dir raised in discovery.
    write_tiny_gguf(tmp_path / "alpha.gguf")
    app = make_app([tmp_path / ("x" * 300), tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert str(app.query_one("#models-summary", Label).content).startswith("2 models")


@run_async
async def test_deleting_a_model_named_with_a_byte_that_is_not_utf8(tmp_path: Path) -> None:
    # The notification says it as the table does (U+FFFD), not as a lone surrogate.
    model = write_tiny_gguf(tmp_path / "bad\udcffname.gguf")
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("down", "d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for_catalog(pilot)
        assert not model.exists() and seen[-1] == f"Models: deleted {tmp_path}/bad\ufffdname.gguf"


@run_async
async def test_load_settings_are_refused_for_a_name_the_settings_file_cannot_hold(tmp_path: Path) -> None:
    # The settings file is UTF-8: saving [model."…/bad\udcff.gguf"] raised UnicodeEncodeError, a crash, and the
    # key stayed in the config, failing every later save (a theme, a folder).
    write_tiny_gguf(tmp_path / "bad\udcffname.gguf")
    file = tmp_path / "tuillm.toml"
    app = make_app([tmp_path], config=load_config(file))
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("down", "e")
        assert not isinstance(app.screen, ModelSettingsScreen)
        assert seen[-1] == ("Models: bad\ufffdname.gguf: its name is not UTF-8, which the settings file cannot hold; "
                            "rename the file")
        assert app.session.config.model_defaults == {} and not file.exists()
