"""Every one-line field holds no control sequence, however its value came: set from a file or the database, typed,
pasted or completed. Textual's Input draws its value as it is (only BEL is dropped), so an OSC in a pasted search
retitled the terminal and a CSI in a completed file name moved the cursor."""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input

from tests.tui.app_helpers import make_app, run_async
from tuillm.tui.screens.rename import RenameScreen
from tuillm.tui.widgets.safe_input import SafeInput

HOSTILE = "a\x1b]0;pwned\x07b\x1b[2J\x9b31mc\nd"
CLEAN = "abc d"  # one line: the newline is a space


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield SafeInput(HOSTILE, id="field")


def _drawn(field: Input) -> str:
    return "".join(segment.text for strip in field.render_lines(field.region.reset_offset) for segment in strip)


@run_async
async def test_no_control_sequence_enters_however_the_value_comes() -> None:
    app = _Host()
    async with app.run_test() as pilot:
        field = app.query_one(SafeInput)
        assert field.value == CLEAN  # given at the start
        field.value = HOSTILE
        assert field.value == CLEAN  # set
        field.value = ""
        field.focus()
        await pilot.pause()
        app.post_message(events.Paste(HOSTILE))  # as the driver posts it: the app passes it to the focus
        await pilot.pause()
        assert field.value == "abc"  # pasted (Textual's Input takes a paste's first line)
        field.insert_text_at_cursor("\x1b[1;1H!")  # as a completion inserts
        await pilot.press("x")
        assert field.value == "abc!x" and field.cursor_position == len(field.value)
        assert "\x1b" not in _drawn(field) and "\x9b" not in _drawn(field)


@run_async
async def test_every_field_of_the_panes_and_of_a_dialog_is_one(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        fields = list(app.query(Input))
        assert fields and all(isinstance(f, SafeInput) for f in fields), [type(f).__name__ for f in fields]
        app.push_screen(RenameScreen("a title\x1b]0;pwned\x07 [bold]from the database"))
        await pilot.pause()
        field = app.screen.query_one(Input)
        assert isinstance(field, SafeInput) and field.value == "a title [bold]from the database"
