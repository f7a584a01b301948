"""The Train pane against a hostile dataset: an example of a few hundred thousand characters is previewed in part
(all of it, re-wrapped at every resize, froze the app for seconds), and the preview says how much it left out."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Label, RichLog, Static

from tests.checkpoints import tiny_random_checkpoint
from tests.tui.app_helpers import make_app, run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, record_notifications
from tests.tui.fake_backend import FakeBackend
from tuillm.core.events import Log, Progress
from tuillm.core.text import safe_text
from tuillm.core.train import jsonl
from tuillm.core.train.checkpoints import ADAPTER_CONFIG
from tuillm.core.train.preview import CUT, PROMPT, TRAINED, Preview, PreviewExample
from tuillm.tui.jobs import JobProgress
from tuillm.tui.panes import train_preview
from tuillm.tui.panes.train_preview import EXAMPLE_CHARS, PreviewView, preview_text
from tuillm.tui.screens.ab import ABScreen, Model
from tuillm.tui.screens.confirm import ConfirmScreen


def hello_data(path: Path) -> Path:
    """A one-example dataset at ``path``."""
    path.write_text(json.dumps({"text": "hello"}) + "\n")
    return path


@asynccontextmanager
async def on_train_pane(tmp_path: Path) -> AsyncIterator[tuple[App, Pilot, Widget, list[str]]]:
    """The app at 80x24 on the Train pane (models under ``tmp_path``), with its notifications' texts."""
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        yield app, pilot, app.query_one("#pane-train"), seen


@run_async
async def test_a_huge_example_is_previewed_in_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    monkeypatch.setattr(jsonl, "_open", lambda path, _open=jsonl._open: opened.append(path) or _open(path))
    data = tmp_path / "huge.jsonl"
    words = "lorem ipsum dolor sit amet " * 8000  # 216,000 characters on one line
    data.write_text(json.dumps({"text": words}) + "\n" + json.dumps({"text": "short one"}) + "\n")
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        app.query_one("#train-base").value = "demo"
        app.query_one("#train-data").value = str(data)
        view = app.query_one(PreviewView)
        await until(pilot, lambda: view.preview is not None or view.error is not None, "the preview")
        assert view.error is None
        shown = str(app.query_one("#train-preview", Static).content)
        assert len(shown) < 20_000
        told = re.search(r"… ([\d,]+) more characters not shown", shown)
        # Shown and left out, the whole example (with what the template put after the text).
        assert told is not None and len(words) <= len(shown) + int(told[1].replace(",", "")) < len(words) + 20_000
        assert "short one" in shown  # the next example is still there, whole
        # Tokenized only as far as it is shown (the whole of it froze the app): its count is a bound, not a guess.
        assert "line 1: more than 512 tokens, 512 trained; cut at 512" in shown
        assert opened == [data]  # one read of the file for the count, the checks and the examples


def test_preview_text_cleans_only_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """It runs on the event loop: cleaning a whole 5 MB piece of control characters to show 4,000 of them stalled
    the app."""
    cleaned: list[int] = []
    monkeypatch.setattr(train_preview, "safe_text", lambda text: cleaned.append(len(text)) or safe_text(text))
    huge = "a\x1b[31mb " * 100_000
    example = PreviewExample(1, [("Say it.", PROMPT), (huge, TRAINED), (huge, CUT)], 600_000, 512, exact=False)
    text = preview_text(Preview(Path("d.jsonl"), "messages", 1, "model", [example]), 512).plain
    assert max(cleaned) <= EXAMPLE_CHARS and "\x1b" not in text
    told = re.search(r"… ([\d,]+) more characters not shown", text)
    assert told is not None and int(told[1].replace(",", "")) == 2 * len(huge) + len("Say it.") - EXAMPLE_CHARS


@run_async
async def test_file_names_in_the_log_and_the_question_play_no_sequences(tmp_path: Path) -> None:
    hostile = "e\x1b]0;pwned\x07\x1b[31mX"  # renames the terminal, turns the screen red
    data = hello_data(tmp_path / f"{hostile}.jsonl")
    out = tmp_path / f"{hostile}-lora"
    out.mkdir()
    (out / ADAPTER_CONFIG).write_text("{}")  # a finished adapter there: Start asks before replacing it
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        app.query_one("#train-data").value = str(data)
        app.query_one("#train-output").value = str(out)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        question = str(app.screen.query_one(".dialog-title", Label).content)
        assert "holds a trained adapter" in question and "\x1b" not in question and "\x07" not in question
        await pilot.press("n")
        # The core's lines quote the names too, as a run reports them.
        pane = app.query_one("#pane-train")
        pane.post_message(JobProgress("train", Log(f"{data.name}: 1 examples, text format")))
        pane.post_message(JobProgress("train", Progress("load", 0, 0, f"reading {data.name}")))
        await until(pilot, lambda: app.query_one("#train-log", RichLog).lines, "the log line")
        logged = "".join(strip.text for strip in app.query_one("#train-log", RichLog).lines)
        stats = str(app.query_one("#train-stats", Static).render())
        assert "examples" in logged and "reading e" in stats
        assert "\x1b" not in logged + stats and "\x07" not in logged + stats


@run_async
async def test_ab_titles_name_the_models_without_their_sequences(tmp_path: Path) -> None:
    hostile = "tuned\x1b]0;pwned\x07\x1b[31m\nX"  # an adapter folder named so: its merged model is named after it
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(Model(tmp_path / "base.gguf", "base"), Model(tmp_path / "tuned.gguf", hostile),
                          backends=FakeBackend)
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
        titles = [str(label.content) for label in screen.query(".ab-side-title").results(Label)]
        assert titles == ["Base · base", "Tuned · tuned X"]


@pytest.mark.slow
@run_async
async def test_start_from_its_button_keeps_the_keys_working(tmp_path: Path) -> None:
    """Start disables itself: the focus went nowhere, so Esc (the pane's key) did nothing for the whole run and
    nothing had the focus after it."""
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"example {i}"}) + "\n" for i in range(8)))
    app = make_app([tmp_path / "models"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        pane = app.query_one("#pane-train")
        for key, value in (("base", base), ("data", data), ("output", tmp_path / "out"), ("max_steps", 1000),
                           ("max_len", 16)):
            app.query_one(f"#train-{key}").value = str(value)
        start = app.query_one("#train-start", Button)
        app.screen.set_focus(start)
        await pilot.press("enter")
        assert pane.job == "train" and app.focused is app.query_one("#train-cancel", Button)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "Esc's question")
        await pilot.press("y")
        await until(pilot, lambda: pane.job is None, "the run to stop")
        assert app.focused is start


@run_async
async def test_a_pasted_nul_in_a_path_is_named_before_the_run(tmp_path: Path) -> None:
    data = hello_data(tmp_path / "data.jsonl")
    async with on_train_pane(tmp_path) as (app, pilot, pane, seen):
        for key in ("base", "data", "output"):
            fields = {"base": "demo", "data": str(data), "output": str(tmp_path / "out")}
            fields[key] = f"{tmp_path}/x\x00y"
            for name, value in fields.items():
                app.query_one(f"#train-{name}").value = value
            await pilot.press("ctrl+s")
            await pilot.pause()
            told = [text for text in seen if text.startswith("Train: ")]
            assert pane.job is None and told[-1] == f"Train: {key.title()}: not a path (it holds a NUL character)"
        # The preview, read as the fields change, says it in the same words.
        app.query_one("#train-data").value = f"{tmp_path}/x\x00y"
        view = app.query_one(PreviewView)
        # (Waited for by its words: a refusal of the base's NUL, from a loop above, may still be shown until then.)
        refusal = "Data: not a path (it holds a NUL character)"
        await until(pilot, lambda: view.error == refusal and view.preview is None, "the preview's refusal")


@run_async
async def test_a_folder_as_data_is_named_before_the_run(tmp_path: Path) -> None:
    """Data "." or "/" with no output folder crashed the app: its default output, "<data>-lora", has no name to
    follow. A folder or a missing file is refused by Start, the output field left as it was."""
    async with on_train_pane(tmp_path) as (app, pilot, pane, seen):
        for data, why in ((".", "not a file"), ("/", "not a file"), (str(tmp_path), "not a file"),
                          (f"{tmp_path}/gone.jsonl", "no such file")):
            app.query_one("#train-data").value = data
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert pane.job is None and seen[-1] == f"Train: Data: {data}: {why}"
            assert app.query_one("#train-output").value == ""


@run_async
async def test_a_pasted_huge_number_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A 400-digit rank, max len or batch size overflowed the memory estimate's floats: the app crashed as it was
    typed. The declared bounds refuse it in the estimate's line and at Start."""
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = hello_data(tmp_path / "data.jsonl")
    async with on_train_pane(tmp_path) as (app, pilot, pane, seen):
        app.query_one("#train-base").value = str(base)
        app.query_one("#train-data").value = str(data)
        await until(pilot, lambda: pane.shape is not None, "the base's shape")
        huge = "1" + "0" * 400
        for key, title in (("rank", "Rank"), ("max_len", "Max len"), ("batch_size", "Batch size")):
            field = app.query_one(f"#train-{key}")
            default, field.value = field.value, huge
            await pilot.pause()
            memory = str(app.query_one("#train-memory", Static).content)
            assert memory.startswith(f"Memory estimate: {title}: must be a whole number from "), memory
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert pane.job is None and seen[-1].startswith(f"Train settings: {title}: must be")
            field.value = default


@run_async
async def test_every_checkbox_is_on_screen_at_60_columns(tmp_path: Path) -> None:
    """The checkboxes' one row ran past the edge at 60 columns: Resume could not be seen, nor ticked by sight."""
    for size in ((60, 20), (80, 24)):
        app = make_app([tmp_path])
        async with app.run_test(size=size) as pilot:
            await pilot.press("f5")
            app.query_one("#train-params").collapsed = False
            await pilot.pause()
            for box in app.query("#train-checks Checkbox").results(Checkbox):
                if box.display:
                    app.query_one("#pane-train").scroll_to_widget(box, animate=False, immediate=True)
                    await pilot.pause()
                    assert box.region.width > len(str(box.label)) and box.region.right <= size[0] - 2, (size, box)


@run_async
async def test_a_max_len_the_form_refuses_is_not_previewed(tmp_path: Path) -> None:
    """The preview read Max len with int(): -5 was previewed as "beyond -5 tokens", 11 of 44 tokens trained, while
    Start refused it. A value the option refuses leaves the last preview as it was."""
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Say hello.", "output": "Hello there, friend."}) + "\n")
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        view = app.query_one(PreviewView)
        app.query_one("#train-base").value = str(base)
        app.query_one("#train-data").value = str(data)
        await until(pilot, lambda: view.preview is not None, "the preview")
        shown = view.preview
        for text in ("-5", "1", "99999999999999999999"):
            app.query_one("#train-max_len").value = text
            await pilot.pause(train_preview.PREVIEW_DELAY_S + 0.3)
            await pilot.pause()
            assert view.preview is shown and "beyond 512 tokens" in str(app.query_one("#train-preview").content)


@run_async
async def test_every_button_is_on_screen_at_60_columns(tmp_path: Path) -> None:
    """The Result row (a select and four buttons 16 columns wide) ran past 60 columns: Chat was cut to "C" and A/B
    could not be seen."""
    app = make_app([tmp_path])
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("f5")
        pane = app.query_one("#pane-train")
        for button in app.query(".train-buttons Button").results(Button):
            pane.scroll_to_widget(button, animate=False, immediate=True)
            await pilot.pause()
            assert button.region.right <= 58 and button.region.width >= len(str(button.label)), button
