"""The A/B view under a hostile tester at 80x24 and 60x20: one A/B at a time (the palette over it offers no
pane commands, so no second view loads two more models), long model names cut visibly at 60 columns, and Esc or
Ctrl+Q while both sides stream stops both, leaves no model thread and no traceback (on the real demo model)."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from textual.app import App

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app
from tests.tui.fake_backend import FakeBackend
from tuillm.tui.screens.ab import SIDES, ABScreen, Model

NARROW = (60, 20)


def screen_lines(app: App) -> list[str]:
    """The screen's rows as the terminal shows them (text only)."""
    return ["".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips()]


def sides(tmp_path: Path, base: str = "base", tuned: str = "tuned") -> tuple[Model, Model]:
    return Model(tmp_path / f"{base}.gguf", base), Model(tmp_path / f"{tuned}.gguf", tuned)


@run_async
async def test_the_palette_over_a_dialog_offers_no_pane_commands(tmp_path: Path) -> None:
    """The palette's "Train: A/B compare" worked over the A/B view: a second view pushed on the first loaded two
    more models (four in memory); every pane's command acted behind any dialog (Chat options twice). Over a dialog
    the palette offers the app's own commands only; over the panes, all of them."""
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        over_panes = [c.title for c in app.get_system_commands(app.screen)]
        assert any(t.startswith("Show ") for t in over_panes) and any("A/B" in t for t in over_panes), over_panes
        screen = ABScreen(*sides(tmp_path), backends=FakeBackend)
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
        over_ab = [c.title for c in app.get_system_commands(app.screen)]
        assert not any(t.startswith("Show ") or "A/B" in t for t in over_ab), over_ab
        assert "Help: keys" in over_ab and "Settings" in over_ab  # the app's own still work there
        await pilot.press("ctrl+p", *"A/B compare")
        await pilot.pause(0.3)  # the palette searches in a worker
        await pilot.press("enter")
        await pilot.pause()
        assert [s for s in app.screen_stack if isinstance(s, ABScreen)] == [screen]


@run_async
async def test_long_model_names_are_cut_visibly_at_60_columns(tmp_path: Path) -> None:
    """Each side's title was as wide as its text: at 60 columns the base model's name ran into "Tuned" with no
    space and no sign that it was cut ("…-Q4_K_MTuned · …")."""
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ABScreen(*sides(tmp_path, "Meta-Llama-3.1-8B-Instruct-Q4_K_M", "Meta-Llama-3.1-8B-tuned-q8_0"),
                          backends=FakeBackend)
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
        await pilot.pause()
        title_row = screen.query(".ab-side-title")[0].region.y
        line = screen_lines(app)[title_row]
        assert re.search(r"Base · Meta-Llama-3\.1-8B-[^ ]*… +Tuned · Meta-Llama", line), line
        assert line.rstrip(" │").endswith("…"), line  # the tuned side's name is cut the same way
        top = screen_lines(app)[screen.query_one("#ab-title").region.y]
        assert top.rstrip(" │").endswith("…"), top  # the screen's own title too ("· Enter sen")


async def _stream_then(key: str, tmp_path: Path, demo_gguf: Path) -> None:
    """Both sides on the demo (the same file twice), a long answer streaming on each, then ``key``."""
    app = chat_app(tmp_path)
    errors: list[BaseException] = []
    app._handle_exception = errors.append  # type: ignore[method-assign] - a traceback would land here
    async with app.run_test(size=NARROW) as pilot:
        screen = ABScreen(Model(demo_gguf, "demo"), Model(demo_gguf, "demo"), n_ctx=512)
        screen.sampling = replace(screen.sampling, max_tokens=400)  # far longer than the test waits
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()) or bool(screen.errors), "both models loaded")
        assert not screen.errors, screen.errors
        screen.query_one("#ab-prompt").value = "Write a long story about a lighthouse keeper."
        await pilot.press("enter")
        await until(pilot, lambda: all(screen.replies[side] for side in SIDES), "text on both sides")
        await pilot.press(key)
        if key == "escape":
            await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the A/B view closed")
            assert not any(session.loaded for session in screen.sessions.values())  # both models freed
            assert not [t for t in threading.enumerate() if t.name.startswith("tuillm-chat")]
    assert not errors, errors
    assert not any(session.loaded for session in screen.sessions.values())
    assert not [t for t in threading.enumerate() if t.name.startswith("tuillm-chat")]


@pytest.mark.parametrize("key", ["escape", "ctrl+q"])
def test_esc_or_quit_while_both_sides_stream(key: str, tmp_path: Path, demo_gguf: Path) -> None:
    run_async(_stream_then)(key, tmp_path, demo_gguf)

