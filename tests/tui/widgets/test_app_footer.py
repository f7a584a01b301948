"""The app's footer: rebuilt when the keys it shows change, and not on every refresh of the bindings."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from tests.tui.app_helpers import run_async, until
from tuillm.tui.widgets.app_footer import AppFooter


class FooterApp(App):
    BINDINGS = [Binding("f5", "save", "Save"), Binding("f6", "export", "Export")]
    can_save = True

    def compose(self) -> ComposeResult:
        yield Input()
        yield AppFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "save" and not self.can_save else True  # None: shown, disabled

    def action_save(self) -> None:
        pass

    def action_export(self) -> None:
        pass


def keys(app: App) -> list[FooterKey]:
    return list(app.query_one(AppFooter).query(FooterKey))


@run_async
async def test_the_footer_is_rebuilt_only_when_its_keys_change() -> None:
    app = FooterApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await until(pilot, lambda: len(keys(app)) >= 2, "the footer's keys")
        shown = keys(app)
        assert [key.description for key in shown][:2] == ["Save", "Export"]
        for _ in range(3):  # the bindings refreshed, the same keys: the same widgets
            app.refresh_bindings()
            await pilot.pause()
        assert keys(app) == shown
        app.can_save = False
        app.refresh_bindings()
        await until(pilot, lambda: keys(app) != shown, "the footer rebuilt")
        save = next(key for key in keys(app) if key.description == "Save")
        assert save.has_class("-disabled")
