from textual.app import App, ComposeResult

from tests.tui.app_helpers import run_async
from tuillm.tui.widgets.filter_input import FilterInput


class _FilterApp(App[None]):
    def compose(self) -> ComposeResult:
        yield FilterInput(id="f")


@run_async
async def test_a_slash_into_an_empty_filter_is_not_text_but_one_later_is() -> None:
    app = _FilterApp()
    async with app.run_test() as pilot:
        box = app.query_one(FilterInput)
        box.focus()
        await pilot.press("slash", "slash")  # the key that opens the filter, pressed once too often
        assert box.value == ""
        await pilot.press("d", "e", "slash", "m")
        assert box.value == "de/m"
