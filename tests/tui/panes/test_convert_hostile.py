"""The Convert pane against hostile sources and outputs: a model name that looks like Rich markup is shown as
written in the source list, and an output that is the source itself is refused before anything is asked."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Checkbox, Input, Label, OptionList, Select, SelectionList

from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app, run_async, until
from tests.tui.chat_helpers import record_notifications
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.sweep_dialog import SweepDialog


async def _open_pane(pilot) -> ConvertPane:
    await pilot.press("f4")
    pane = pilot.app.query_one(ConvertPane)
    await until(pilot, lambda: not pane.loading_sources, "the source list")
    return pane


async def _with_source(pilot, source: Path) -> ConvertPane:
    """The Convert pane with ``source`` chosen and its headers read."""
    pane = await _open_pane(pilot)
    pane.use_source(source)
    await until(pilot, lambda: pane.source is not None, "the source's headers")
    return pane


@run_async
async def test_a_name_like_markup_is_listed_as_written(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "[bold red]markup.gguf")
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        select = pane.query_one("#convert-catalog", Select)
        select.focus()
        await pilot.press("enter")  # the list opens
        overlay = select.query_one("SelectOverlay", OptionList)
        await until(pilot, lambda: overlay.display and overlay.option_count > 1, "the open source list")
        shown = [strip.text for strip in overlay.render_lines(overlay.region.reset_offset)]
        assert any(line.startswith("[bold red]markup (F16 GGUF") for line in shown), shown


@run_async
async def test_an_output_that_is_the_source_is_refused_before_asking(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny-Q8_0.gguf")  # re-quantized to q8_0 it is named tiny-Q8_0.gguf
    before = source.read_bytes()
    linked = tmp_path / "links"
    linked.mkdir()
    (linked / "tiny-Q8_0.gguf").symlink_to(source)
    app = make_app([tmp_path / "models"])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _with_source(pilot, source)
        pane.query_one("#convert-types", SelectionList).select("q8_0")
        for folder in (tmp_path, linked):  # its own folder, and a link to it in another
            pane.query_one("#convert-folder", Input).value = str(folder)
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen) and not pane.running
            assert seen[-1] == (f"Convert: {folder / 'tiny-Q8_0.gguf'}: the q8_0 output would replace the source; "
                                "choose another output folder")
    assert source.read_bytes() == before


@run_async
async def test_the_sweep_form_quotes_a_typed_path_without_its_sequences(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=(80, 24)) as pilot:
        await _with_source(pilot, source)
        await pilot.press("f8")
        await until(pilot, lambda: isinstance(app.screen, SweepDialog), "the sweep form")
        app.screen.query_one("#sweep-calibration", Input).value = "/nowhere/e\x1b]0;pwned\x07\x1b[31mX.txt"
        await pilot.press("ctrl+s")
        error = app.screen.query_one("#sweep-error", Label)
        await until(pilot, lambda: str(error.content), "the refusal")
        assert isinstance(app.screen, SweepDialog)
        assert "no such file" in str(error.content) and "\x1b" not in str(error.content)


@run_async
async def test_after_a_job_the_focus_is_on_the_type_list(tmp_path: Path) -> None:
    """Cancel has the focus while the job runs; disabled at its end, Textual moved the focus on to the Quality report
    checkbox, where the next Space (meant for the list) ticked it. (This bare GGUF is refused by llama.cpp's
    quantizer: the job fails in a moment, and ends as any job does.)"""
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _with_source(pilot, source)
        pane.query_one("#convert-types", SelectionList).select("q8_0")
        pane.query_one("#convert-report", Checkbox).value = False
        pane.query_one("#convert-folder", Input).value = str(tmp_path / "out")
        start = pane.query_one("#convert-start", Button)
        app.screen.set_focus(start)
        await pilot.press("enter")  # the job fails at once: it may have ended before the next line (a busy machine)
        await until(pilot, lambda: not pane.running, "the end of the job")
        await until(pilot, lambda: app.focused is not None, "the focus back")
        assert app.focused is pane.query_one("#convert-types", SelectionList)


@run_async
async def test_a_matrix_file_that_is_not_one_is_refused_before_the_job(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    app = make_app([tmp_path / "models"])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _with_source(pilot, source)
        pane.query_one("#convert-types", SelectionList).select("q4_k_m")
        pane.query_one("#imatrix-mode", Select).value = "file"
        matrix = pane.query_one("#imatrix-file", Input)
        refusals = ((tmp_path / "none.imatrix", "no such file or folder"),
                    (tmp_path, "a folder, not an importance matrix file"))
        for typed, reason in refusals:
            matrix.value = str(typed)
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert not pane.running and seen[-1] == f"Convert: {typed}: {reason}"


@run_async
async def test_a_pasted_nul_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    app = make_app([tmp_path / "models"])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _open_pane(pilot)
        pane.query_one("#convert-source", Input).value = f"{tmp_path}/ti\x00ny.gguf"
        info = pane.query_one("#convert-info", Label)
        await pilot.pause()
        await until(pilot, lambda: str(info.content) != "reading the headers…", "the source's problem")
        assert str(info.content) == f"{tmp_path}/tiny.gguf: not a path (it holds a NUL character)"
        pane.use_source(source)
        await until(pilot, lambda: pane.source is not None, "the source's headers")
        pane.query_one("#convert-types", SelectionList).select("q8_0")
        pane.query_one("#convert-folder", Input).value = f"{tmp_path}/o\x00ut"
        await pilot.press("ctrl+s")
        await pilot.pause()
        # (as the pane words it: the app's notify takes the NUL out on the way to the screen)
        assert not pane.running and seen[-1] == f"Convert: {tmp_path}/o\x00ut: not a path (it holds a NUL character)"
        pane.query_one("#convert-folder", Input).value = str(tmp_path / "out")
        pane.query_one("#imatrix-mode", Select).value = "file"
        pane.query_one("#imatrix-file", Input).value = f"{tmp_path}/m\x00.imatrix"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not pane.running and seen[-1] == f"Convert: {tmp_path}/m.imatrix: not a path (it holds a NUL character)"
        assert not app.unexpected_errors
