"""Every one-line field draws no control character, however its value came: set from a file or the database, typed,
pasted or completed. Textual's Input draws its value as it is (only BEL is dropped), so an OSC in a pasted search
retitled the terminal and a CSI in a completed file name moved the cursor. The value itself is kept: a path with
odd characters still names its file."""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input

from tests.tui.app_helpers import make_app, run_async
from tuillm.tui.screens.rename import RenameScreen
from tuillm.tui.widgets.safe_input import SafeInput

HOSTILE = "a\x1b]0;pwned\x07b\x1b[2J\x9b31mc"


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield SafeInput(HOSTILE, id="field")


def _drawn(field: Input) -> str:
    return "".join(segment.text for strip in field.render_lines(field.region.reset_offset) for segment in strip)


@run_async
async def test_no_control_character_is_drawn_and_the_value_is_kept() -> None:
    app = _Host()
    async with app.run_test() as pilot:
        field = app.query_one(SafeInput)
        assert field.value == HOSTILE and "a]0;pwnedb[2J31mc" in _drawn(field)  # given at the start
        field.value = ""
        field.focus()
        await pilot.pause()
        app.post_message(events.Paste(HOSTILE))  # as the driver posts it: the app passes it to the focus
        await pilot.pause()
        field.insert_text_at_cursor("\x1b[1;1H!")  # as a completion inserts
        await pilot.press("x")
        assert field.value == HOSTILE + "\x1b[1;1H!x" and field.cursor_position == len(field.value)
        drawn = _drawn(field)
        assert "[1;1H!x" in drawn and not any(c in drawn for c in "\x1b\x07\x9b")


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
        assert isinstance(field, SafeInput) and field.value == "a title [bold]from the database"  # (the store's)
