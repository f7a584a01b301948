"""The Train pane on the real app at 80x24: a bad dataset is refused before any training; a tiny run on the demo
fills the loss plot and the log, merges to q8_0, opens Chat with the result and compares base and tuned side by
side (merged GGUF, and base GGUF + exported LoRA); a cancelled run leaves a checkpoint and no adapter, Resume
finishes it, and A/B from an HF base converts the base first. Training is real (torch on CPU), a few steps of 64
tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.checkpoints import demo_hf_checkpoint, tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tests.tui.app_helpers import make_app, panes_ready, run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, record_notifications
from tests.tui.fake_backend import FakeBackend
from tuillm.core.errors import TuillmError
from tuillm.core.models.hardware import cpu_bf16
from tuillm.core.train.memory import lora_params, model_shape
from tuillm.core.train.options import TRAIN_OPTIONS, TrainConfig
from tuillm.tui.app import TuillmApp
from tuillm.tui.panes.train_form import TrainForm, parse_form
from tuillm.tui.screens.ab import (
    ABScreen,
    ABSources,
    Compare,
    ConvertBaseFirst,
    ExportFirst,
    MergeFirst,
    Model,
    next_ab_step,
)
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.widgets.loss_plot import LossPlot


def train_pane(app: TuillmApp):
    return app.query_one("#pane-train")


def log_text(app: TuillmApp) -> str:
    return "\n".join(line.text for line in app.query_one("#train-log").lines)


def seed_dequantized_demo(demo_gguf: Path) -> None:
    """The demo GGUF's dequantized copy in this test's cache, as ``tuillm train demo`` leaves it (the same
    dequantize_gguf built the shared test checkpoint): training from the GGUF then skips the 40 s rebuild."""
    from tuillm.core.train.base import dequantized_folder

    folder = dequantized_folder(demo_gguf)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(demo_hf_checkpoint(), target_is_directory=True)


async def open_pane(pilot: Pilot, base: str, data: Path, **fields: object) -> None:
    """Show the Train pane and fill the form (as typed text; the form parses it like the user's)."""
    app = pilot.app
    await pilot.press("f5")
    assert app.current_pane_id() == "train"
    assert app.focused is app.query_one("#train-data")
    app.query_one("#train-base").value = base
    app.query_one("#train-data").value = str(data)
    for key, value in fields.items():
        app.query_one(f"#train-{key}").value = str(value)
    await pilot.pause()


async def wait_job(pilot: Pilot, what: str) -> None:
    pane = train_pane(pilot.app)
    await until(pilot, lambda: pane.job is None, what)
    await pilot.pause()


TINY = dict(max_steps=2, batch_size=2, max_len=64, rank=4, alpha=8, eval_fraction=0.25, eval_every=1,
            save_every=0)


@run_async
async def test_a_bad_dataset_is_refused_before_training(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "fine"}\n{oops\n{"text": "fine"}\nnot json\n')
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, "demo", data)
        pane = train_pane(app)
        # The preview reads the file as soon as it is chosen: the error is in the pane and notified.
        await until(pilot, lambda: pane.preview_error is not None, "the preview's error")
        assert "2 invalid JSON lines (lines 2, 4)" in str(app.query_one("#train-preview").content)
        seen.clear()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("Train failed" in s for s in seen), "the refusal")
        await wait_job(pilot, "the refused job ending")
        refusal = next(s for s in seen if "Train failed" in s)
        assert "bad.jsonl: 2 invalid JSON lines (lines 2, 4); each line must be one JSON object" in refusal
        assert "Traceback" not in refusal and "loading" not in log_text(app)
        assert not (tmp_path / "bad-lora").exists()  # the default output folder was never created
        assert app.query_one(LossPlot).train == []
        # Bad settings are refused by the form before any job.
        app.query_one("#train-data").value = str(write_fact_dataset(tmp_path / "ok.jsonl", 4))
        app.query_one("#train-rank").value = "zero"
        seen.clear()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert seen == ["Train settings: not a number: Rank"] and pane.job is None


@run_async
async def test_the_form_is_the_declared_options(tmp_path: Path) -> None:
    """One field per declared training option, in its order, showing its default and help; read back, the form is
    TrainConfig's defaults; a value the declaration refuses is refused in one line before any job."""
    data = write_fact_dataset(tmp_path / "ok.jsonl", 4)
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, "demo", data)
        pane = train_pane(app)
        form = app.query_one(TrainForm)
        assert list(form.fields) == [o.name for o in TRAIN_OPTIONS]
        for option in TRAIN_OPTIONS:
            field = app.query_one(f"#train-{option.name}")
            assert field is form.fields[option.name]
            assert str(field.tooltip).lower() == option.help.lower()
            shown = field.value if option.kind is bool or option.choices else option.parse(field.value)
            assert shown == option.default, option.name
        assert pane.form_config("b", "d", "o") == TrainConfig(base="b", data=["d"], output="o")
        for key, text, line in (("lr", "nan", "LR: must be a number above 0, not 'nan'"),
                                ("epochs", "nan", "Epochs: must be a number above 0 and at most 10000, not 'nan'"),
                                ("alpha", "inf", "Alpha: must be a number above 0, not 'inf'"),
                                ("rank", "0", "Rank: must be a whole number from 1 to 65536, not '0'")):
            default = form.fields[key].value
            form.fields[key].value = text
            seen.clear()
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert seen == [f"Train settings: {line}"] and pane.job is None
            form.fields[key].value = default
    raw = {**form.raw(), "device": "banana", "max_len": "1", "seed": "x"}
    with pytest.raises(TuillmError) as refused:
        parse_form(raw)
    assert str(refused.value) == ("not a number: Seed; Max len: must be a whole number from 2 to 16777216, not '1'; "
                                  "Device: must be one of auto, cpu, cuda, mps, not 'banana'")


def test_the_way_to_ab(tmp_path: Path) -> None:
    """What A/B makes first, step by step: from a GGUF base the exported adapter, from an HF base the merged model
    and the base converted once; then the two sides."""
    gguf, hf, adapter = tmp_path / "base.gguf", tmp_path / "hf", tmp_path / "adapter"
    adapter.mkdir()

    def is_gguf(path: Path) -> bool:
        return path == gguf

    def step(base: Path, **made: Path) -> object:
        sources = dict(merged=None, lora_gguf=None, base_gguf=None) | made
        return next_ab_step(ABSources(base, adapter, merge_type="q8_0", **sources), is_gguf, demo=gguf)

    lora = adapter / "adapter-lora-f16.gguf"
    assert step(gguf) == ExportFirst()
    assert step(gguf, lora_gguf=lora) == Compare(Model(gguf, "demo"), Model(gguf, "base", lora=lora))
    merged = adapter / "adapter-q8_0.gguf"
    assert step(hf) == MergeFirst()
    assert step(hf, merged=merged) == ConvertBaseFirst(adapter / "base-q8_0.gguf")
    (adapter / "base-q8_0.gguf").write_bytes(b"GGUF")  # converted once, then reused
    assert step(hf, merged=merged) == Compare(Model(adapter / "base-q8_0.gguf", "base-q8_0"),
                                              Model(merged, "adapter-q8_0"))


@run_async
async def test_default_outputs(tmp_path: Path) -> None:
    """The adapter's default folder skips a stopped run's (checkpoints only) and a finished one's, unless Resume
    asks for the stopped one; Merge and Export write to the first models folder, said before anything starts."""
    data = tmp_path / "data" / "fact.jsonl"
    data.parent.mkdir()
    data.write_text("")
    models = tmp_path / "models"
    app = make_app([models])
    async with app.run_test(size=SIZE) as pilot:
        await panes_ready(pilot)
        pane = train_pane(app)
        assert pane.default_output(data) == data.parent / "fact-lora"
        step = data.parent / "fact-lora" / "checkpoints" / "step-0000001"
        step.mkdir(parents=True)  # a run quit before its first checkpoint was complete: still not a new folder
        assert pane.default_output(data) == data.parent / "fact-lora-2"
        (step / "state.json").write_text("{}")
        assert pane.default_output(data, resume=True) == data.parent / "fact-lora"
        (data.parent / "fact-lora-2").mkdir()
        (data.parent / "fact-lora-2" / "adapter_config.json").write_text("{}")
        assert pane.default_output(data) == data.parent / "fact-lora-3"
        assert pane.output_folder() == models
        shown = str(app.query_one("#train-destination").content)
        assert shown == f"Merge and Export write to {models}, listed in Models"
        await pilot.pause()


@run_async
async def test_a_cancelled_run_says_whether_a_checkpoint_was_saved(tmp_path: Path) -> None:
    from tuillm.tui.jobs import JobCancelled
    from tuillm.tui.panes.train_jobs import TRAIN

    out = tmp_path / "adapter"
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await panes_ready(pilot)
        pane = train_pane(app)
        pane.run_config = TrainConfig(base="demo", data=[str(tmp_path / "d.jsonl")], output=str(out))
        out.mkdir()  # cancelled while the base loaded: the folder, and no step in it
        pane.on_job_cancelled(JobCancelled(TRAIN))
        assert seen[-1] == "Train: cancelled before the first step: nothing was saved"  # it named a checkpoint
        step = out / "checkpoints" / "step-0000003"
        step.mkdir(parents=True)
        (step / "state.json").write_text("{}")
        pane.on_job_cancelled(JobCancelled(TRAIN))
        assert seen[-1].startswith(f"Train: cancelled: the checkpoint is in {out}/checkpoints")


@run_async
async def test_a_resume_with_no_step_left_is_a_notification(tmp_path: Path) -> None:
    # A step-2 checkpoint resumed with Max steps 1 wrote an adapter of "steps: 2" without a word.
    data = write_fact_dataset(tmp_path / "fact.jsonl", 4)
    out = tmp_path / "adapter"
    checkpoint = out / "checkpoints" / "step-0000002"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": 2}))  # refused before the checkpoint is read further
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, "demo", data, output=out, **{**TINY, "max_steps": 1})
        app.query_one("#train-resume").value = True
        await pilot.press("ctrl+s")
        await wait_job(pilot, "the refused resume")
        assert seen[-1] == (f"Train failed: {checkpoint}: the checkpoint is at step 2 and --max-steps is 1: no step "
                            "is left to train; raise --max-steps above 2, or use another output folder")
        assert not (out / "adapter_config.json").exists() and "loading" not in log_text(app)


@run_async
async def test_a_stop_while_the_data_is_encoded_ends_the_run_there(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Esc's stop (and a quit, which sets the same flag) waited for the whole dataset to be encoded, then the model
    # to load: a blank terminal for seconds after a quit.
    import threading

    from tuillm.core.train import prepare
    from tuillm.tui.panes.train_jobs import TRAIN
    from tuillm.tui.panes.train_run import cancel_question

    data = write_fact_dataset(tmp_path / "fact.jsonl", 500)
    out = tmp_path / "adapter"
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    panes: list = []
    started, calls = threading.Event(), [0]
    real = prepare.encoding

    def encoding(tokenizer):  # noqa: ANN001, ANN202 - the first example waits for the stop
        template, tokenize = real(tokenizer)
        cancel = panes[0].cancel_event  # the running job's

        def gated(text: str) -> list[int]:
            calls[0] += 1
            started.set()
            cancel.wait(60)
            return tokenize(text)

        return template, gated

    monkeypatch.setattr(prepare, "encoding", encoding)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        base = tiny_random_checkpoint("llama", tmp_path / "tiny")
        await open_pane(pilot, str(base), data, output=out, **TINY)
        panes.append(train_pane(app))
        await pilot.press("ctrl+s")
        await until(pilot, started.is_set, "the encoding")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        # Not "after this step" with its checkpoint: no step has begun, so it stops at once and saves nothing.
        assert app.screen.question == cancel_question(TRAIN, stepping=False)
        assert "setting up" in app.screen.question and "checkpoint" not in app.screen.question
        await pilot.press("y")
        assert "stopping…" in log_text(app) and "after this step" not in log_text(app)
        await wait_job(pilot, "the stopped run")
        assert seen[-1] == "Train: cancelled before the first step: nothing was saved"
        assert calls[0] < 10  # the example under way, not the 500 (about 1,000 calls)
        assert not out.exists() and "loading" not in log_text(app)


@run_async
async def test_a_run_reads_its_data_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pane's check, the checkpoint's record of the data (its SHA-256) and the encoding each read the file again.
    from tuillm.core.train import jsonl, loop

    data = write_fact_dataset(tmp_path / "fact.jsonl", 8)
    opened: list[Path] = []
    real = jsonl._open

    def counting(path: Path):  # noqa: ANN202
        opened.append(Path(path))
        return real(path)

    def no_model(*args: object, **kwargs: object) -> None:
        raise TuillmError("the model would load here")

    monkeypatch.setattr(jsonl, "_open", counting)
    monkeypatch.setattr(loop, "lora_model", no_model)
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        base = tiny_random_checkpoint("llama", tmp_path / "tiny")
        await open_pane(pilot, str(base), data, output=tmp_path / "adapter", **TINY)
        pane = train_pane(app)
        await until(pilot, lambda: pane.preview is not None, "the preview")  # its own read, before the run
        opened.clear()
        await pilot.press("ctrl+s")
        await wait_job(pilot, "the set-up")
        assert seen[-1] == "Train failed: the model would load here"
        assert "fact.jsonl: 8 examples, messages format" in log_text(app)
        assert opened == [data]  # checked, hashed and encoded from one read


@run_async
async def test_ab_keeps_the_question_above_both_answers(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(Model(tmp_path / "base.gguf", "base"), Model(tmp_path / "tuned.gguf", "tuned"),
                          backends=FakeBackend)
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
        question = screen.query_one("#ab-question")
        assert not question.display  # nothing asked yet: no empty line
        screen.query_one("#ab-prompt").value = "What is \x1b[31mred?"
        await pilot.press("enter")
        await until(pilot, lambda: not any(screen.busy.values()), "both replies")
        assert screen.query_one("#ab-prompt").value == ""  # ready for the next question
        assert question.display and question.content.plain == "Q: What is red?"  # the escape is stripped
        assert all(screen.replies.values())
        # The question is drawn above the two answers.
        assert question.region.y < min(screen.query_one(f"#ab-{side}").region.y for side in ("base", "tuned"))


@run_async
async def test_ab_strips_escapes_from_the_models_answers(tmp_path: Path) -> None:
    """A model's text may hold terminal control sequences: neither the streamed tokens nor the final answer
    reach the screen with them."""
    tokens = ("Hi", " \x1b[31m", "red", "\x1b]0;owned\x07", "\x1b[2J", " done")
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(Model(tmp_path / "base.gguf", "base"), Model(tmp_path / "tuned.gguf", "tuned"),
                          backends=lambda emit: FakeBackend(emit, tokens=tokens))
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
        screen.query_one("#ab-prompt").value = "Say it in red"
        await pilot.press("enter")
        await until(pilot, lambda: not any(screen.busy.values()), "both replies")
        for side in ("base", "tuned"):
            assert screen.replies[side] == "Hi red done"
            assert screen.query_one(f"#ab-{side}").content.plain == "Hi red done"


@run_async
async def test_ab_draws_streamed_text_at_a_pace_not_per_token(tmp_path: Path) -> None:
    """Each side decodes 60 tokens over ~0.6 s while the other does too: the sides are drawn a few times a second
    (every draw takes CPU from both models), the first token at once, and the whole answers end up shown."""
    import time

    from tuillm.core.chat.events import ChatEvent, Token

    def slow(emit):  # noqa: ANN001, ANN202 - the screen's forwarder
        def forward(event: ChatEvent) -> None:
            if isinstance(event, Token):
                time.sleep(0.01)  # a model decoding 100 tokens a second
            emit(event)
        return forward

    tokens = tuple(f"w{i} " for i in range(60))
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = ABScreen(Model(tmp_path / "base.gguf", "base"), Model(tmp_path / "tuned.gguf", "tuned"),
                          backends=lambda emit: FakeBackend(slow(emit), tokens=tokens))
        await app.push_screen(screen)
        await until(pilot, lambda: all(screen.loaded.values()), "both sides loaded")
        shown: list[tuple[str, str]] = []
        show = screen._show
        # str(): the reply's last draw is a Text (a stopped one carries its mark)
        screen._show = lambda side, text, style="": (shown.append((side, str(text))), show(side, text, style))[1]
        screen.query_one("#ab-prompt").value = "Count"
        await pilot.press("enter")
        await until(pilot, lambda: not any(screen.busy.values()), "both replies")
        for side in ("base", "tuned"):
            texts = [text for s, text in shown if s == side and text != "…"]
            assert texts[-1] == "".join(tokens) and screen.query_one(f"#ab-{side}").content.plain == texts[-1]
            assert 2 <= len(texts) <= 12, len(texts)  # drawn as it came, at most ~10 times a second


@pytest.mark.slow
@run_async
async def test_train_merge_chat_and_ab(tmp_path: Path, demo_gguf: Path) -> None:
    seed_dequantized_demo(demo_gguf)
    data = write_fact_dataset(tmp_path / "fact.jsonl", 8)
    out = tmp_path / "adapter"
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, "demo", data, output=out, **TINY)
        pane = train_pane(app)
        # The preview (template and tokenizer of the GGUF): the assistant's answer marked as what carries loss.
        await until(pilot, lambda: pane.preview is not None, "the preview")
        preview = app.query_one("#train-preview").content
        assert "fact.jsonl: 8 examples, messages format" in preview.plain
        trained = [preview.plain[s.start:s.end] for s in preview.spans if s.style == "bold green"]
        assert any("Zorblax is Quimbleton" in t or "Quimbleton is the capital" in t for t in trained), trained
        assert all("<|im_start|>user" not in t for t in trained)
        memory = str(app.query_one("#train-memory").content)
        dtype = "bfloat16" if cpu_bf16() else "float32"  # auto: the CPU's bf16 units decide
        assert memory.startswith("Training memory ≈ ") and f"(cpu, {dtype})" in memory

        await pilot.press("ctrl+s")
        assert pane.job == "train"
        await wait_job(pilot, "the training run")
        assert not [s for s in seen if "failed" in s], seen
        plot = app.query_one(LossPlot)
        assert [step for step, _ in plot.train] == [1, 2] and [step for step, _ in plot.eval] == [1, 2]
        assert "using the dequantized copy" in log_text(app) and "step 2/2: loss" in log_text(app)
        # The estimate's LoRA size is peft's own count (logged by the run).
        assert f"{lora_params(model_shape(demo_gguf), 4) / 1e6:.2f}M trainable" in log_text(app)
        assert str(app.query_one("#train-stats").content).startswith("done: 2 steps")
        assert (out / "adapter_config.json").is_file() and pane.adapter_dir == out
        # The plot as drawn: the legend and the step range.
        shown = plot.render().plain
        assert "train" in shown and "eval" in shown and shown.rstrip().endswith("step 2")

        await pilot.press("f7")  # merge to the default type, q8_0
        await wait_job(pilot, "the merge")
        merged = tmp_path / "adapter-q8_0.gguf"  # in the first models folder: Models lists it at once
        assert pane.merged_path == merged and merged.is_file()
        rows = app.query_one("#models-table").rows
        await until(pilot, lambda: any(Path(str(key.value)).name == merged.name for key in rows),
                         "the merged model listed in Models")
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left

        await pilot.press("ctrl+t")
        assert app.current_pane_id() == "chat"
        chat = app.query_one("#pane-chat")
        await until(pilot, lambda: not chat.model_loading and chat.engine.loaded, "the merged model loaded")
        assert chat.engine.model_path == str(merged)
        assert "adapter-q8_0" in str(app.query_one("#chat-header").content)

        # A/B from the pane: the demo GGUF against the merged model.
        await pilot.press("f5")
        await pilot.press("ctrl+b")
        await until(pilot, lambda: isinstance(app.screen, ABScreen), "the A/B screen")
        screen = app.screen
        assert screen.models["base"].path == demo_gguf and screen.models["tuned"].path == merged
        await ask_both(pilot, screen)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the A/B screen closed")
        assert not any(s.loaded for s in screen.sessions.values())  # both models freed

        # The adapter as a GGUF LoRA, applied on the base GGUF: the other way to run the tuned model.
        await pilot.press("ctrl+y")
        await wait_job(pilot, "the export")
        assert pane.lora_gguf is not None and pane.lora_gguf.is_file()
        lora_screen = ABScreen(Model(demo_gguf, "demo"), Model(demo_gguf, "demo", lora=pane.lora_gguf),
                               n_ctx=512)
        await app.push_screen(lora_screen)
        await ask_both(pilot, lora_screen)
        assert lora_screen.query(".ab-side-title")[1].content.plain == "Tuned · demo + LoRA"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the second A/B screen closed")


async def ask_both(pilot: Pilot, screen: ABScreen) -> None:
    from dataclasses import replace

    screen.sampling = replace(screen.sampling, max_tokens=12)
    await until(pilot, lambda: all(screen.loaded.values()) or bool(screen.errors), "both models loaded")
    assert not screen.errors, screen.errors
    screen.query_one("#ab-prompt").value = "What is the capital of Zorblax?"
    await pilot.press("enter")
    await until(pilot, lambda: not any(screen.busy.values()), "both replies")
    assert not screen.errors, screen.errors
    for side in ("base", "tuned"):
        reply = screen.replies[side]
        assert reply.strip(), side
        assert str(screen.query_one(f"#ab-{side}").content) == reply


@pytest.mark.slow
@run_async
async def test_cancel_resume_and_ab_from_an_hf_base(tmp_path: Path) -> None:
    data = write_fact_dataset(tmp_path / "fact.jsonl", 8)
    out = tmp_path / "adapter"
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, str(demo_hf_checkpoint()), data, output=out,
                        **{**TINY, "max_steps": 200, "eval_fraction": 0})
        pane = train_pane(app)
        await pilot.press("ctrl+s")
        plot = app.query_one(LossPlot)
        await until(pilot, lambda: len(plot.train) >= 1 or pane.job is None, "the first step")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")  # Esc asks first (tests/tui/panes/test_esc_asks.py)
        await wait_job(pilot, "the cancelled run")
        assert any("cancelled: the checkpoint is in" in s for s in seen), seen
        checkpoints = sorted((out / "checkpoints").glob("step-*"))
        assert checkpoints and (checkpoints[-1] / "state.json").is_file()
        step = json.loads((checkpoints[-1] / "state.json").read_text())["step"]
        assert 1 <= step < 200 and step == len(plot.train)
        assert not (out / "adapter_config.json").exists()  # no adapter under the final name
        assert app.query_one("#train-merge").disabled  # nothing to merge

        # Resume: one more step from the checkpoint, then the adapter.
        app.query_one("#train-resume").value = True
        app.query_one("#train-max_steps").value = str(step + 1)
        await pilot.press("ctrl+s")
        await wait_job(pilot, "the resumed run")
        assert f"resuming from step-{step:07d} (step {step} of {step + 1})" in log_text(app)
        assert [s for s, _ in plot.train] == [step + 1] and (out / "adapter_config.json").is_file()

        # A/B from an HF base: the pane merges, converts the base to the same type once, then compares.
        await pilot.press("ctrl+b")
        await until(pilot, lambda: isinstance(app.screen, ABScreen), "the A/B screen")
        screen = app.screen
        assert screen.models["base"].path == out / "base-q8_0.gguf" == pane.base_gguf
        assert screen.models["tuned"].path == tmp_path / "adapter-q8_0.gguf" == pane.merged_path
        assert "A/B: the base is an HF folder; converting it" in log_text(app)
        await ask_both(pilot, screen)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ABScreen), "the A/B screen closed")
