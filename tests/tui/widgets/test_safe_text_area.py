"""Every text area (the chat's prompt, the chat options' system prompt, the settings' folders and keys) holds no
control sequence, however its text came: typed, pasted, loaded or given at the start. Textual draws a TextArea's text
as it is, so an OSC 52 in a pasted system prompt wrote the terminal's clipboard and a CSI cleared the screen."""

from __future__ import annotations

from textual import events
from textual.app import App, ComposeResult

from tests.tui.app_helpers import run_async
from tuillm.core.llama.options import Sampling
from tuillm.tui.screens.chat_options import ChatOptionsScreen
from tuillm.tui.widgets.safe_text_area import SafeTextArea

HOSTILE = "be brief\x1b]52;c;SGVsbG8=\x07\x1b[2J\x9b31m\n\tand kind"
CLEAN = "be brief\n\tand kind"


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield SafeTextArea(HOSTILE, id="area")


@run_async
async def test_no_control_sequence_enters_however_the_text_comes() -> None:
    app = _Host()
    async with app.run_test() as pilot:
        area = app.query_one(SafeTextArea)
        assert area.text == CLEAN  # given at the start
        area.load_text(HOSTILE)
        assert area.text == CLEAN  # loaded
        area.clear()
        area.focus()
        await pilot.pause()
        assert area.text == ""
        app.post_message(events.Paste(HOSTILE))  # as the driver posts it: the app passes it to the focus
        await pilot.pause()
        assert area.text == CLEAN  # pasted
        await pilot.press("escape", "x")
        assert area.text.endswith("x") and "\x1b" not in area.text


@run_async
async def test_the_chat_options_system_prompt_is_one() -> None:
    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(ChatOptionsScreen(HOSTILE, Sampling()))

    app = Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        area = app.screen.query_one("#options-system", SafeTextArea)
        assert area.text == CLEAN
