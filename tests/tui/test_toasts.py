"""Notifications over a large dialog (Settings, load settings, help, the A/B view) never cover the widget being
worked in: they sat at the top right, under where the panes' tab bar is, over the dialog's first field (Settings'
model folders at 60x20 and 80x24). Over the panes they keep their place (test_layout). Their place is chosen again
as the dialog's focus moves and as the terminal is resized, and only while a dialog shows toasts. A wrapped toast
shows every line, anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._toast import Toast, ToastRack

from tests.tui.app_helpers import make_app, panes_ready, run_async, wait_for_catalog
from tests.tui.fake_backend import FakeBackend
from tuillm.tui import toasts
from tuillm.tui.screens.ab import ABScreen, Model

SIZES = [(60, 20), (80, 24), (120, 40)]
MESSAGE = "A notification long enough to wrap over a couple of lines at the narrower sizes"


async def _settings(pilot: Pilot) -> None:
    await pilot.press("f9")


async def _help(pilot: Pilot) -> None:
    await pilot.press("f1")


async def _load_settings(pilot: Pilot) -> None:
    await pilot.press("f3")
    await wait_for_catalog(pilot)
    await pilot.press("e")  # the demo's load settings


async def _ab(pilot: Pilot) -> None:
    pilot.app.push_screen(ABScreen(Model(Path("base.gguf"), "base"), Model(Path("tuned.gguf"), "tuned"),
                                   backends=FakeBackend))


DIALOGS: dict[str, Callable[[Pilot], Awaitable[None]]] = {
    "settings": _settings, "help": _help, "load settings": _load_settings, "A/B": _ab}


async def _settle(pilot: Pilot) -> None:
    for _ in range(4):  # the toast mounts a refresh after notify(); its place is chosen a refresh after that
        await pilot.pause(0.05)


def _drawn_by(pilot: Pilot, widget: Widget) -> None:
    """Every cell of ``widget`` shows it (or a widget inside it), not a toast."""
    region = widget.region
    assert region, widget
    for y in range(region.y, region.bottom):
        for x in range(region.x, region.right):
            shown, _ = pilot.app.screen.get_widget_at(x, y)
            assert shown is widget or widget in shown.ancestors, (x, y, shown, widget)


def _toast_drawn(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    width, height = screen.size
    return any(isinstance(screen.get_widget_at(x, y)[0], Toast) for y in range(height) for x in range(width))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dialog", list(DIALOGS))
@run_async
async def test_a_toast_over_a_dialog_leaves_its_focused_widget_clear(tmp_path: Path, dialog: str,
                                                                    size: tuple[int, int]) -> None:
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=size, notifications=True) as pilot:
        await panes_ready(pilot)
        await DIALOGS[dialog](pilot)
        await _settle(pilot)
        screen = app.screen
        assert screen is not app.screen_stack[0] and app.focused is not None
        app.notify(MESSAGE, title="Test", timeout=30)
        await _settle(pilot)
        assert _toast_drawn(pilot)
        _drawn_by(pilot, app.focused)
        _drawn_by(pilot, screen.query_one(Footer))  # the keys stay readable


@asynccontextmanager
async def _settings_with_toast(tmp_path: Path, size: tuple[int, int]) -> AsyncIterator[Pilot]:
    """Settings open at ``size`` with its first field focused and a toast shown, clear of that field."""
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=size, notifications=True) as pilot:
        await panes_ready(pilot)
        await pilot.press("f9")
        await _settle(pilot)
        app.notify(MESSAGE, title="Test", timeout=30)
        await _settle(pilot)
        _drawn_by(pilot, app.focused)
        yield pilot


@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_the_toasts_move_as_the_focus_does(tmp_path: Path, size: tuple[int, int]) -> None:
    """Settings: from its first field (the model folders) to one near its bottom, the toasts keep out of the way."""
    async with _settings_with_toast(tmp_path, size) as pilot:
        app = pilot.app
        lowest = max((w for w in app.screen.focus_chain if w.region), key=lambda w: w.region.bottom)
        app.screen.set_focus(lowest)
        await _settle(pilot)
        assert _toast_drawn(pilot)
        _drawn_by(pilot, lowest)


def _placement(screen: Screen) -> tuple[object, ...]:
    rack = screen.get_child_by_type(ToastRack)
    return rack.styles.dock, rack.styles.align, rack.styles.margin, rack.styles.max_height


@pytest.mark.parametrize(("start", "end"), [((120, 40), (60, 20)), ((60, 20), (120, 40)), ((80, 24), (60, 20))])
@run_async
async def test_the_toasts_are_placed_again_on_a_resize(tmp_path: Path, start: tuple[int, int],
                                                      end: tuple[int, int]) -> None:
    """Settings' first field focused: at the new size the toasts are where that size puts them (they kept the old
    size's place, over the field, until the next toast or focus change)."""
    async with _settings_with_toast(tmp_path, start) as pilot:
        app = pilot.app
        await pilot.resize_terminal(*end)
        await _settle(pilot)
        assert app.screen.size == end and _toast_drawn(pilot)
        _drawn_by(pilot, app.focused)
        _drawn_by(pilot, app.screen.query_one(Footer))
        placed = _placement(app.screen)
        toasts.place_toasts(app.screen)  # placed afresh for this size: the same place
        assert _placement(app.screen) == placed


@run_async
async def test_a_focus_change_places_nothing_unless_a_dialog_shows_toasts(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The placement ran on every focus change in the app, over the panes too, to return at once there."""
    placed: list[Screen] = []
    place = toasts.place_toasts
    monkeypatch.setattr(toasts, "place_toasts", lambda screen: (placed.append(screen), place(screen))[1])
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await panes_ready(pilot)

        async def focus_moves() -> int:
            """How often the toasts were placed while the focus moved on the screen on top."""
            await _settle(pilot)
            placed.clear()
            for _ in range(4):
                app.screen.focus_next()
                await pilot.pause()
            await _settle(pilot)
            return len(placed)

        assert await focus_moves() == 0  # the panes
        app.notify(MESSAGE, title="Test", timeout=30)
        assert await focus_moves() == 0  # toasts over the panes stay where they are
        app.clear_notifications()
        await pilot.press("f9")
        assert await focus_moves() == 0  # a dialog with no toast
        app.notify(MESSAGE, title="Test", timeout=30)
        assert await focus_moves() > 0  # a dialog with toasts: they keep out of the focused widget's way
        _drawn_by(pilot, app.focused)
        app.clear_notifications()  # its toasts gone: nothing more
        assert await focus_moves() == 0


# Two lines, each as long as the toast is wide at 60x20 (the first) and at 80x24 (the second), so that the toast
# needs one line more than it would a column or two wider.
LONG = "Converted demo.gguf in 42 seconds\nIt is listed in the Models pane: press Enter."


def _toast_text(pilot: Pilot, toast: Toast) -> str:
    """What is drawn where ``toast`` is, its lines joined."""
    rows = ["".join(segment.text for segment in strip) for strip in pilot.app.screen._compositor.render_strips()]
    region = toast.content_region
    return " ".join(" ".join(rows[y][region.x:region.right].split()) for y in range(region.y, region.bottom))


@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_a_wrapped_toast_shows_every_line(tmp_path: Path, size: tuple[int, int]) -> None:
    """Its last line was cut at 60x20 and 80x24: the rack measured the toast a little wider than it is drawn (a
    percentage width, resolved with and without the rack's scrollbar gutter), so one line too few."""
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=size, notifications=True) as pilot:
        await panes_ready(pilot)
        app.notify(LONG, title="Converted", timeout=30)
        await _settle(pilot)
        toast = app.screen.query_one(Toast)
        assert _toast_text(pilot, toast) == "Converted " + " ".join(LONG.split())
        assert toast.region.right >= size[0] - 2 and toast.region.width <= min(60, size[0])  # as wide as it was
