"""Notifications over a large dialog (Settings, load settings, help, the A/B view) never cover the widget being
worked in: they sat at the top right, under where the panes' tab bar is, over the dialog's first field (Settings'
model folders at 60x20 and 80x24). Over the panes they keep their place (test_layout)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._toast import Toast

from tests.tui.app_helpers import make_app, panes_ready, run_async, wait_for_catalog
from tests.tui.fake_backend import FakeBackend
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


@pytest.mark.parametrize("size", SIZES)
@run_async
async def test_the_toasts_move_as_the_focus_does(tmp_path: Path, size: tuple[int, int]) -> None:
    """Settings: from its first field (the model folders) to one near its bottom, the toasts keep out of the way."""
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=size, notifications=True) as pilot:
        await panes_ready(pilot)
        await pilot.press("f9")
        await _settle(pilot)
        app.notify(MESSAGE, title="Test", timeout=30)
        await _settle(pilot)
        _drawn_by(pilot, app.focused)
        lowest = max((w for w in app.screen.focus_chain if w.region), key=lambda w: w.region.bottom)
        app.screen.set_focus(lowest)
        await _settle(pilot)
        assert _toast_drawn(pilot)
        _drawn_by(pilot, lowest)
