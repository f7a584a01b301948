"""The A/B view under a hostile tester at 80x24 and 60x20: one A/B at a time (the palette over it offers no
pane commands, so no second view loads two more models), long model names cut visibly at 60 columns, Esc while both
sides stream stops both and keeps what came (a second Esc closes), Ctrl+Q then leaves no model thread and no
traceback (on the real demo model); a prompt neither side takes is kept, the sides show a scrollbar and scroll by
keyboard, and Esc during a load closes the view at once (the models freed once the load ends)."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest
from rich.color import Color
from textual.app import App
from textual.containers import VerticalScroll
from textual.pilot import Pilot

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app
from tests.tui.fake_backend import FakeBackend, gated_backend
from tuillm.core.chat.events import ModelLoaded
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions
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
        if key == "escape":  # stops both, keeps what came; the view and the models stay
            await until(pilot, lambda: not any(screen.busy.values()), "both replies stopped")
            assert app.screen is screen and all(session.loaded for session in screen.sessions.values())
            for side in SIDES:
                assert screen.replies[side] and not screen.errors
                assert screen.query_one(f"#ab-{side}").content.plain == screen.replies[side] + "\n[stopped]"
            await pilot.press("escape")  # nothing streams: closes
            await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the A/B view closed")
            assert not any(session.loaded for session in screen.sessions.values())  # both models freed
            assert not [t for t in threading.enumerate() if t.name.startswith("tuillm-chat")]
    assert screen.closed.wait(60)  # a quit closes both sides on a thread of their own (bounded: never hang)
    assert not errors, errors
    assert not any(session.loaded for session in screen.sessions.values())
    assert not [t for t in threading.enumerate() if t.name.startswith("tuillm-chat")]


@pytest.mark.parametrize("key", ["escape", "ctrl+q"])
def test_esc_or_quit_while_both_sides_stream(key: str, tmp_path: Path, demo_gguf: Path) -> None:
    run_async(_stream_then)(key, tmp_path, demo_gguf)



# --- on fake backends: no model ---------------------------------------------------------------------------------


async def _open(pilot: Pilot, screen: ABScreen) -> None:
    await pilot.app.push_screen(screen)
    await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")


@run_async
async def test_esc_stops_both_replies_and_keeps_them_then_closes(tmp_path: Path) -> None:
    """Esc closed the view while both replies streamed (unloading both models): there was no way to stop them and
    read what came. Esc now stops both (as it stops Chat's reply); the partial answers stay, marked; a second Esc,
    with nothing streaming, closes."""
    backend = gated_backend(40)
    backend.gate = threading.Semaphore(0)
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ABScreen(*sides(tmp_path), backends=backend)
        await _open(pilot, screen)
        screen.query_one("#ab-prompt").value = "Count"
        await pilot.press("enter")
        for _ in range(200):  # one token at a time until both sides have some (bounded)
            if all(screen.replies.values()):
                break
            backend.gate.release()
            await pilot.pause(0.05)
        assert all(screen.replies.values()) and all(screen.busy.values())
        await pilot.press("escape")
        backend.gate.release(2)  # a side waiting on its next token passes it, then sees the stop
        await until(pilot, lambda: not any(screen.busy.values()), "both replies stopped")
        assert app.screen is screen and all(s.loaded for s in screen.sessions.values())
        for side in SIDES:
            reply = screen.replies[side]
            assert reply.startswith("Line 0.") and "Line 39." not in reply
            assert screen.query_one(f"#ab-{side}").content.plain == reply + "\n[stopped]"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the view closed")
        assert screen.closed.is_set()  # both sides closed before the view went (an unload is quick)


class Refusing(FakeBackend):
    """Refuses every prompt before starting, as llama.cpp's session refuses one longer than the context."""

    def reply(self, messages, sampling=None, listener=None) -> Future:  # noqa: ANN001
        future: Future = Future()
        future.set_exception(TuillmError("the prompt is 3000 tokens, longer than the context (2048)"))
        return future


@run_async
async def test_a_prompt_neither_side_takes_is_kept(tmp_path: Path) -> None:
    """The prompt field was cleared on Enter even when both sides refused the prompt: a long pasted prompt was
    lost. It stays unless at least one side took it."""
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(*sides(tmp_path), backends=Refusing)
        await _open(pilot, screen)
        prompt = screen.query_one("#ab-prompt")
        prompt.value = "a very long pasted prompt " * 20
        await pilot.press("enter")
        await until(pilot, lambda: not any(screen.busy.values()) and len(screen.errors) == 2, "both refused")
        await pilot.pause()
        assert prompt.value == "a very long pasted prompt " * 20
    made: list[type[FakeBackend]] = [Refusing, FakeBackend]  # the base side refuses, the tuned one answers
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(*sides(tmp_path), backends=lambda emit: made.pop(0)(emit))
        await _open(pilot, screen)
        prompt = screen.query_one("#ab-prompt")
        prompt.value = "short"
        await pilot.press("enter")
        await until(pilot, lambda: not any(screen.busy.values()), "both replies")
        await pilot.pause()
        assert list(screen.errors) == ["base"] and screen.replies["tuned"] and prompt.value == ""


def _contrast(a: Color, b: Color) -> float:
    """WCAG's contrast ratio of two colours (3 is the least for a part of the interface to be seen)."""
    def luminance(c: Color) -> float:
        r, g, b = ((v / 255) / 12.92 if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4
                   for v in c.get_truecolor())
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _cell_colour(app: App, x: int, y: int) -> Color:
    """The colour a cell's background shows (its foreground where the style is reversed)."""
    column = 0
    for segment in app.screen._compositor.render_strips()[y]:
        if column <= x < column + len(segment.text):
            style = segment.style
            return style.color if style.reverse else style.bgcolor
        column += len(segment.text)
    raise AssertionError(f"no cell at {x},{y}")


@run_async
async def test_the_sides_show_a_scrollbar_and_scroll_by_keyboard(tmp_path: Path) -> None:
    """A reply longer than its side was cut off with no sign of more below: the scrollbar's thumb (dark blue on
    black) could not be told from its track. Tab reaches each side and the keys scroll it."""
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        lines = [f"line {i}\n" for i in range(60)]
        screen = ABScreen(*sides(tmp_path), backends=lambda emit: FakeBackend(emit, tokens=lines))
        await _open(pilot, screen)
        screen.query_one("#ab-prompt").value = "Count"
        await pilot.press("enter")
        await until(pilot, lambda: not any(screen.busy.values()), "both replies")
        await pilot.pause()
        scrolls = list(screen.query(".ab-scroll").results(VerticalScroll))
        for scroll in scrolls:
            assert scroll.max_scroll_y > 0 and scroll.show_vertical_scrollbar
            region = scroll.region
            bar = region.right - 2  # the scrollbar, left of the side's right border
            colours = {_cell_colour(app, bar, y) for y in range(region.y, region.bottom)}
            assert len(colours) == 2, colours  # a thumb and a track
            assert _contrast(*colours) >= 3, colours
        await pilot.press("tab")
        assert app.focused is scrolls[0]
        await pilot.press("pagedown")
        assert scrolls[0].scroll_y > 0
        await pilot.press("tab", "end")
        assert app.focused is scrolls[1] and scrolls[1].scroll_y == scrolls[1].max_scroll_y


@run_async
async def test_esc_during_a_load_closes_at_once(tmp_path: Path) -> None:
    """Esc while a model loaded froze the screen until the load ended (closing waited for it on the event loop).
    The view goes at once; both models are freed once the load ends, and no thread is left."""
    release, ended = threading.Event(), threading.Event()

    class SlowLoad(FakeBackend):
        def _load(self, path: str, options: LoadOptions) -> ModelLoaded:
            release.wait(15)  # bounded: without the fix the event loop waits this long
            ended.set()
            return super()._load(path, options)

    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(*sides(tmp_path), backends=SlowLoad)
        await app.push_screen(screen)
        await pilot.pause()
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the view closed")
        assert not ended.is_set()  # the view went while the load was still under way
        assert not screen.closed.is_set()
        await pilot.press("f3")  # the app answers meanwhile
        assert app.current_pane_id() == "models"
        release.set()
        assert await asyncio.to_thread(screen.closed.wait, 30)
        assert not [t for t in threading.enumerate() if t.name.startswith(("fake-chat", "tuillm-ab"))]


@run_async
async def test_each_side_follows_its_reply_unless_scrolled_up(tmp_path: Path) -> None:
    """A reply longer than its side ran below the view while it streamed. Each side now follows the end of its
    reply while its view is at the end; a side the user scrolled up stays where it was."""
    backend = gated_backend(60)
    backend.gate = threading.Semaphore(0)
    app = chat_app(tmp_path)
    async with app.run_test(size=NARROW) as pilot:
        screen = ABScreen(*sides(tmp_path), backends=backend)
        await _open(pilot, screen)
        scrolls = list(screen.query(".ab-scroll").results(VerticalScroll))
        screen.query_one("#ab-prompt").value = "Count"
        await pilot.press("enter")
        for _ in range(200):  # tokens until both sides overflow their view (bounded)
            if all(s.max_scroll_y > 0 for s in scrolls):
                break
            backend.gate.release(2)
            await pilot.pause(0.05)
        await until(pilot, lambda: all(0 < s.scroll_y == s.max_scroll_y for s in scrolls), "both sides followed")
        await pilot.press("tab", "home")  # the base side scrolled up to read
        assert app.focused is scrolls[0] and scrolls[0].scroll_y == 0
        backend.gate.release(200)
        await until(pilot, lambda: not any(screen.busy.values()), "both replies")
        await until(pilot, lambda: 0 < scrolls[1].scroll_y == scrolls[1].max_scroll_y, "the other followed to the end")
        assert scrolls[0].scroll_y == 0 < scrolls[0].max_scroll_y  # left where the user took it
