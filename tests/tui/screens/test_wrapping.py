"""Long lines wrap where they are shown, at 80x24 and 60x20: the dialogs' questions, hints and errors, and the Train
pane's status and destination lines. Each test reads the text off the rendered screen, inside the box that holds
it: a line cut at a border (as a Label as wide as its text was) loses its end and fails."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from textual.app import App
from textual.widget import Widget
from textual.widgets import Input

from tests.tui.app_helpers import make_app, run_async, until, wait_for_catalog
from tuillm.core.train.checkpoints import CHECKPOINTS
from tuillm.tui.jobs import JobCancelled
from tuillm.tui.panes.convert import ConvertPane
from tuillm.tui.panes.convert_view import CANCEL_QUESTION
from tuillm.tui.panes.train import TrainPane
from tuillm.tui.panes.train_jobs import TRAIN
from tuillm.tui.panes.train_run import cancel_question
from tuillm.tui.screens.chat_search import HINT, ChatSearchScreen
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.model_settings import ModelSettingsScreen

SIZES = [(80, 24), (60, 20)]
sizes = pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")


def words(text: str) -> str:
    """The text without its spaces: a line may wrap at a space or after a hyphen (which adds none)."""
    return "".join(text.split())


def shown(app: App, widget: Widget) -> str:
    """The words ``widget`` shows on the screen: the rows of its region, each cut to the box of its container
    (what a border or the screen's edge leaves of it), joined."""
    lines = [strip.text for strip in app.screen._compositor.render_strips()]
    box = widget.content_region.intersection(widget.parent.content_region).intersection(app.screen.region)
    return words("".join(lines[y][box.x:box.right] for y in range(box.y, box.bottom)))


async def question(pilot, keys: str) -> str:
    """The words of the question that ``keys`` ask, as shown; n leaves it."""
    await pilot.press(keys)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), f"the question of {keys}")
    await pilot.pause()
    text = shown(pilot.app, pilot.app.screen.query_one(".dialog-title"))
    await pilot.press("n")
    await until(pilot, lambda: not isinstance(pilot.app.screen, ConfirmScreen), "the question closed")
    return text


@sizes
@run_async
async def test_the_questions_of_esc_and_quit_are_shown_whole(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=size) as pilot:
        convert = await app.pane("convert")
        await pilot.press("f4")
        assert isinstance(convert, ConvertPane)
        convert.running = True  # as during a conversion: Esc and Ctrl+Q ask (nothing runs: n leaves it so)
        convert.refresh_bindings()
        await pilot.pause()
        assert await question(pilot, "escape") == words(CANCEL_QUESTION)
        assert await question(pilot, "ctrl+q") == words(
            "Quit now? This stops a conversion (the file being written is removed).")
        convert.running = False
        app.push_screen(ConfirmScreen(cancel_question(TRAIN)))  # the Train pane's Esc (test_esc_asks asks it)
        await pilot.pause()
        assert shown(app, app.screen.query_one(".dialog-title")) == words(cancel_question(TRAIN))


@sizes
@run_async
async def test_the_search_hint_is_shown_whole(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=size) as pilot:
        await pilot.press("ctrl+f")
        await until(pilot, lambda: isinstance(app.screen, ChatSearchScreen), "the search dialog")
        await pilot.pause()
        assert shown(app, app.screen.query_one("#search-status")) == words(HINT)


@sizes
@run_async
async def test_a_load_setting_error_is_shown_whole(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app([])
    async with app.run_test(size=size) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("e")  # the demo's load settings
        assert isinstance(app.screen, ModelSettingsScreen)
        app.screen.query_one("#ms-n_gpu_layers", Input).value = "lots"
        error = app.screen.query_one("#model-settings-estimate")
        await until(pilot, lambda: "GPU layers: must be" in str(error.content), "the error")
        error.scroll_visible(animate=False, immediate=True)
        await pilot.pause()
        assert shown(app, error) == words(str(error.content))
        assert shown(app, error).endswith("not'lots'")


@sizes
@run_async
async def test_the_train_panes_destination_and_status_are_shown_whole(tmp_path: Path, size: tuple[int, int]) -> None:
    models = tmp_path / "a-models-folder-with-a-name-long-enough-to-need-two-lines-at-80-columns"
    models.mkdir()
    app = make_app([models])
    async with app.run_test(size=size) as pilot:
        pane = await app.pane("train")
        await pilot.press("f5")
        assert isinstance(pane, TrainPane)
        destination = pane.query_one("#train-destination")
        expected = f"Merge and Export write to {models}, listed in Models"
        pane.scroll_to_widget(destination, animate=False, immediate=True)
        await pilot.pause()
        assert shown(app, destination) == words(expected)
        # Esc's yes on a training that saved a checkpoint: the status line says where it is.
        adapter = models / "adapter"
        step = adapter / CHECKPOINTS / "step-1"
        step.mkdir(parents=True)
        (step / "state.json").write_text("{}")
        pane.run_config = SimpleNamespace(output=adapter)
        pane.post_message(JobCancelled(TRAIN))
        stats = pane.query_one("#train-stats")
        await until(pilot, lambda: "cancelled" in str(stats.content), "the cancelled line")
        pane.scroll_to_widget(stats, animate=False, immediate=True)
        await pilot.pause()
        assert shown(app, stats) == words(str(stats.content))
        assert shown(app, stats).endswith(words("(tick Resume and Start to continue)"))
