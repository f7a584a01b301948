"""The app's footer: rebuilt when the keys it shows change, and not on every refresh of the bindings; a dialog's
footer shows the dialog's keys, not those of the pane under it."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input, Label
from textual.widgets._footer import FooterKey

from tests.tui.app_helpers import make_app, run_async, until
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


class Dialog(ModalScreen[None]):
    BINDINGS = [Binding("ctrl+s", "keep", "Keep"), Binding("escape", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        yield Label("a dialog")

    def action_keep(self) -> None:
        pass


def bottom_row(app: App) -> str:
    """The screen's last row as the terminal shows it: the top screen over the screens it lets through."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    last = update.strips[-1] if update.strips else []  # none before the first layout
    return "".join(seg.text for strip in last for seg in strip if not seg.control)


@run_async
async def test_a_dialog_shows_its_own_keys() -> None:
    app = FooterApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await until(pilot, lambda: "Export" in bottom_row(app), "the app's keys")
        app.push_screen(Dialog())
        await until(pilot, lambda: "Keep" in bottom_row(app), "the dialog's keys")
        assert "Close" in bottom_row(app) and "Save" not in bottom_row(app) and "Export" not in bottom_row(app)
        app.push_screen(Dialog())  # a dialog over a dialog: one footer each
        await pilot.pause()
        assert len(app.screen.query(AppFooter)) == 1
        await pilot.press("escape", "escape")
        await until(pilot, lambda: "Export" in bottom_row(app), "the app's keys again")
        assert "Keep" not in bottom_row(app)


@run_async
async def test_settings_over_a_pane_show_the_settings_keys(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await app.pane("train")
        for pane_key, pane_keys in (("f5", ("Start", "Merge")), ("f2", ("New", "Options"))):
            def pane_shown(keys: tuple[str, ...] = pane_keys) -> bool:
                return all(k in bottom_row(app) for k in keys)

            await pilot.press(pane_key)
            await until(pilot, pane_shown, f"the keys of {pane_key}")
            await pilot.press("f9")
            await until(pilot, lambda: "Save" in bottom_row(app), "the settings' keys")
            row = bottom_row(app)
            assert "^s Save" in row and "esc Cancel" in row, row
            assert not any(k in row for k in pane_keys), row
            await pilot.press("escape")
            await until(pilot, pane_shown, "the pane's keys again")
