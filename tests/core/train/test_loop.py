"""The training loop on a tiny random llama checkpoint (fast): schedules, events, cancel, checkpoints, resume
with the same loss curve as an uninterrupted run, and the refusal to overwrite a finished adapter."""

from __future__ import annotations

import gc
import json
import math
import os
import re
import threading
import weakref
from dataclasses import replace
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Log, Metric, Progress
from tuillm.core.train import base as train_base
from tuillm.core.train import loop
from tuillm.core.train.data import Example, pack
from tuillm.core.train.loop import TrainConfig, latest_checkpoint, lr_at, split_packed, train
from tuillm.core.train.model import KERNEL_CACHE_ENTRIES


def test_schedules() -> None:
    cosine = [lr_at(s, 10, 1.0, "cosine", 2) for s in range(10)]
    assert cosine[:2] == [0.5, 1.0] and cosine[2] == 1.0
    assert all(a >= b for a, b in zip(cosine[2:], cosine[3:], strict=False)) and cosine[-1] < 0.1
    linear = [lr_at(s, 10, 1.0, "linear", 0) for s in range(10)]
    assert linear[0] == 1.0 and linear[5] == pytest.approx(0.5) and linear[-1] == pytest.approx(0.1)
    assert {lr_at(s, 10, 3e-4, "constant", 0) for s in range(10)} == {3e-4}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def config(tiny: Path, tmp_path: Path, out: str, **kw: object) -> TrainConfig:
    # float32: these runs compare losses to 1e-4 (bf16 is compared with float32 on the demo, below).
    data = write_fact_dataset(tmp_path / "fact.jsonl", 12)
    base = dict(base=str(tiny), data=[str(data)], output=str(tmp_path / out), rank=4, alpha=8, dropout=0.1,
                max_len=64, batch_size=2, grad_accum=2, lr=1e-3, epochs=2, eval_fraction=0.2, eval_every=2,
                save_every=2, seed=7, device="cpu", dtype="float32")
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_events_outputs_and_no_overwrite(tiny: Path, tmp_path: Path) -> None:
    events: list = []
    result = train(config(tiny, tmp_path, "a"), emit=events.append)
    out = tmp_path / "a"
    # 12 examples: 10 train + 2 eval; 5 micro-batches of 2 per epoch, 2 per step -> 3 steps per epoch, 5 total.
    assert result.steps == 5
    names = {e.name for e in events if isinstance(e, Metric)}
    assert {"loss", "lr", "tokens_per_s", "setup_s", "memory_bytes", "eta_s", "eval_loss"} <= names
    progress = [e for e in events if isinstance(e, Progress) and e.stage == "train"]
    assert [p.done for p in progress] == [1, 2, 3, 4, 5] and progress[-1].total == 5
    assert any(isinstance(e, Log) and "fact.jsonl: 12 examples, messages format" in e.message for e in events)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["base_model_name_or_path"] == str(tiny)
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert ["eval_loss" in r for r in log] == [False, True, False, True, True]
    assert not (out / "checkpoints").exists()
    with pytest.raises(TuillmError, match="already holds a trained adapter"):
        train(config(tiny, tmp_path, "a"))


def test_an_empty_output_is_not_the_current_folder(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"  # an empty folder: as a path, "" would train into it
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(TuillmError, match=r"^no output folder named \(an empty path\)$"):
        train(replace(config(tiny, tmp_path, "a"), output=""))
    assert list(here.iterdir()) == []


def test_a_cpu_run_caps_the_kernel_caches_unless_the_user_set_them(tiny: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Read once a process, at the first bf16 product: a run sets them before it loads the model.
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "300")
    train(config(tiny, tmp_path, "caches", epochs=1, eval_fraction=0.0))
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(KERNEL_CACHE_ENTRIES)
    assert os.environ["LRU_CACHE_CAPACITY"] == "300"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_model_is_freed_when_the_run_returns(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 dtype: str) -> None:
    # Not at some later full garbage collection: the Train pane runs in the app's process, and a base of a few GB
    # held after its run would stay until then (a bf16 run's autocast forward made a reference cycle).
    models: list[weakref.ref] = []
    real = loop.lora_model

    def kept(*args: object, **kwargs: object) -> object:
        model = real(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(loop, "lora_model", kept)
    gc.collect()
    gc.disable()
    try:
        train(config(tiny, tmp_path, "freed", epochs=1, eval_fraction=0.0, dtype=dtype))
        assert len(models) == 1 and models[0]() is None
    finally:
        gc.enable()


def test_cancel_then_resume_gives_the_same_curve(tiny: Path, tmp_path: Path) -> None:
    full = train(config(tiny, tmp_path, "full"))

    cancel = threading.Event()

    def stop_after_step_3(event: object) -> None:
        if isinstance(event, Metric) and event.name == "loss" and event.step == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        train(config(tiny, tmp_path, "cut"), emit=stop_after_step_3, cancel=cancel)
    cut = tmp_path / "cut"
    assert not (cut / "adapter_config.json").exists()  # no adapter under the final name
    checkpoint = latest_checkpoint(cut)
    assert checkpoint is not None and checkpoint.name == "step-0000003"
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["step-0000002", "step-0000003"]
    with pytest.raises(TuillmError, match=r"resume it \(--resume"):
        train(config(tiny, tmp_path, "cut"))
    with pytest.raises(TuillmError, match=r"other settings \(rank\)"):
        train(config(tiny, tmp_path, "cut", rank=8, resume=True))
    # A damaged checkpoint is one line naming it (it was "unexpected error: JSONDecodeError"), and stays as it was.
    for name, damage, why in (("state.json", b"garbage", "state.json: JSONDecodeError"),
                              ("state.json", b"[" * 100_000, "state.json: RecursionError"),
                              ("state.json", b"[1]", "state.json is not a JSON object"),
                              ("optimizer.safetensors", b"\x08" + bytes(7), "SafetensorError")):
        kept = (checkpoint / name).read_bytes()
        (checkpoint / name).write_bytes(damage)
        with pytest.raises(TuillmError) as refused:
            train(config(tiny, tmp_path, "cut", resume=True))
        assert str(refused.value) == (f"{checkpoint}: a damaged checkpoint ({why}); delete it to resume from the one "
                                      "before, or train afresh with --force")
        (checkpoint / name).write_bytes(kept)

    events: list = []
    resumed = train(config(tiny, tmp_path, "cut", resume=True), emit=events.append)
    assert any(isinstance(e, Log) and "resuming from step-0000003" in e.message for e in events)
    assert [e.done for e in events if isinstance(e, Progress) and e.stage == "train"] == [4, 5]
    assert [r["step"] for r in resumed.loss_log] == [1, 2, 3, 4, 5]
    # Same seed, data order, dropout RNG and optimizer state: the resumed curve is the uninterrupted one.
    for a, b in zip(full.loss_log, resumed.loss_log, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
        assert a["lr"] == pytest.approx(b["lr"])
    assert full.eval_loss == pytest.approx(resumed.eval_loss, rel=1e-4)


def test_bad_targets_and_bad_settings(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Path] = []
    load = train_base.load_model
    monkeypatch.setattr(train_base, "load_model",
                        lambda folder, *a, **kw: loaded.append(folder) or load(folder, *a, **kw))
    with pytest.raises(TuillmError, match="no LoRA target module among nope"):
        train(config(tiny, tmp_path, "t", targets=["nope"]))
    assert loaded == []  # refused before the base's weights were read
    with pytest.raises(TuillmError, match=r"LR: must be a number above 0, not 0"):
        train(config(tiny, tmp_path, "t", lr=0))
    assert not (tmp_path / "t").exists()
    # The tiny model is 64 wide (its MLP 128): a rank above 64 fits no target layer. 24 GB of RAM went to a mistyped
    # --rank 100000 on the demo before this check.
    with pytest.raises(TuillmError, match=r"--rank 65: above the width of every target layer; .* 64 \(q_proj\)"):
        train(config(tiny, tmp_path, "t", rank=65))
    with pytest.raises(TuillmError, match=r"at most 32 \(k_proj\)"):  # 2 KV heads of 16
        train(config(tiny, tmp_path, "t", rank=33, targets=["k_proj"]))
    assert loaded == []


def test_an_output_where_no_folder_can_be_made_is_refused_before_loading(tiny: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # It was "unexpected error: FileNotFoundError" once the model had loaded.
    monkeypatch.setattr(train_base, "load_model", lambda *a, **kw: pytest.fail("loaded"))
    (tmp_path / "file").write_text("x")
    for out, line in ((tmp_path / "file" / "sub", f"{tmp_path / 'file'}: not a folder"),
                      (Path("/proc/tuillm-out"), "/proc: no new file can be made there")):
        with pytest.raises(TuillmError, match=f"^{re.escape(line)}$"):
            train(config(tiny, tmp_path, "unused", output=str(out)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fact.jsonl", "file"]  # no probe left behind


def test_a_diverging_run_stops_before_its_nans_are_saved(tiny: Path, tmp_path: Path) -> None:
    events: list = []
    with pytest.raises(TuillmError, match=r"the loss is nan at step \d: training diverged; lower --lr"):
        train(config(tiny, tmp_path, "nan", alpha=1e300, save_every=1), emit=events.append)
    losses = [e.value for e in events if isinstance(e, Metric) and e.name == "loss"]
    assert all(math.isfinite(x) for x in losses)  # no step of NaNs was reported, nor applied and saved
    assert not (tmp_path / "nan" / "adapter_model.safetensors").exists()
    for saved in (tmp_path / "nan" / "checkpoints").glob("step-*"):
        assert int(saved.name.split("-")[1]) <= len(losses)


def test_grad_accum_is_at_most_an_epoch(tiny: Path, tmp_path: Path) -> None:
    # 10 training examples in micro-batches of 2: 5 a epoch. Accumulating 1,000 made one step of 200 epochs.
    events: list = []
    result = train(config(tiny, tmp_path, "acc", grad_accum=1000), emit=events.append)
    assert result.steps == 2  # 2 epochs of one 5-micro-batch step
    one = loop.Plan.of(config(tiny, tmp_path, "one", grad_accum=1000, epochs=1), 10)
    assert one.summary(config(tiny, tmp_path, "one", grad_accum=1000), "examples").startswith("1 step (1 per epoch)")
    assert any(isinstance(e, Log) and "2 steps (1 per epoch) of 2 x 5 examples (--grad-accum 1000 lowered to the 5 "
               "micro-batches of an epoch)" in e.message for e in events)


def test_gradient_checkpointing_gives_the_same_steps(tiny: Path, tmp_path: Path) -> None:
    plain = train(config(tiny, tmp_path, "plain", max_steps=2, dropout=0.0))
    saved = train(config(tiny, tmp_path, "ckpt", max_steps=2, dropout=0.0, grad_checkpointing=True))
    assert [r["loss"] for r in saved.loss_log] == pytest.approx([r["loss"] for r in plain.loss_log], rel=1e-4)


def test_packed_row_and_one_by_one_give_the_same_steps(tiny: Path, tmp_path: Path) -> None:
    # Equal losses prove the block-diagonal mask of a packed row keeps examples from seeing each other.
    row = train(config(tiny, tmp_path, "row", max_steps=2, dropout=0.0, packing="row"))
    each = train(config(tiny, tmp_path, "each", max_steps=2, dropout=0.0, packing="each"))
    rows = train(config(tiny, tmp_path, "rows", max_steps=2, dropout=0.0, packing="auto", max_len=64))
    want = [r["loss"] for r in row.loss_log]
    assert [r["loss"] for r in each.loss_log] == pytest.approx(want, rel=1e-4)
    assert [r["loss"] for r in rows.loss_log] == pytest.approx(want, rel=1e-4)


def test_split_packed_rows() -> None:
    batch = pack([Example([1] * 3, [1] * 3), Example([2] * 4, [2] * 4), Example([3] * 2, [3] * 2),
                  Example([4] * 5, [4] * 5)])
    assert split_packed(batch, None) == [batch]
    assert [r.input_ids for r in split_packed(batch, 0)] == [[1] * 3, [2] * 4, [3] * 2, [4] * 5]
    rows = split_packed(batch, 7)
    assert [r.input_ids for r in rows] == [[1, 1, 1, 2, 2, 2, 2], [3, 3, 4, 4, 4, 4, 4]]
    assert [r.position_ids for r in rows] == [[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 3, 4]]
    assert [r.n_examples for r in rows] == [2, 2] and [r.n_examples for r in split_packed(batch, 0)] == [1] * 4
    assert sum(r.trained_tokens for r in rows) == batch.trained_tokens


def test_all_linear_on_raw_text_with_loss_everywhere(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": f"Document {i}: " + "word " * (5 + i)}) + "\n" for i in range(6)))
    result = train(config(tiny, tmp_path, "text", data=[str(data)], targets="all-linear", train_on_prompt=True,
                          max_steps=2, schedule="linear", eval_fraction=0.0))
    cfg = json.loads((tmp_path / "text" / "adapter_config.json").read_text())
    # all-linear: every projection of attention and MLP, never the LM head.
    kinds = {name.rsplit(".", 1)[-1] for name in cfg["target_modules"]}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert result.steps == 2 and result.eval_loss is None


def test_pace_leaves_the_warm_up_steps_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set-up runs from ``began`` to the first step; the speed is the run's so far until WARM_STEPS steps are done,
    then the tokens after them over the time after them (a slow first step no longer drags it down)."""
    from tuillm.core.train import schedule

    clock = iter([110.0, 130.0, 132.0, 134.0, 136.0])
    monkeypatch.setattr(schedule.time, "monotonic", lambda: next(clock))
    pace = schedule.Pace(began=100.0)
    assert pace.started() == 110.0 and pace.setup_s == 10.0
    assert schedule.WARM_STEPS == 2
    assert pace.tokens_per_s(1, 400) == 20.0 and not pace.steady  # 400 tokens in the 20 s of a cold first step
    assert pace.tokens_per_s(2, 800) == pytest.approx(800 / 22) and not pace.steady  # warm-up ends at 132
    assert pace.tokens_per_s(3, 1200) == 200.0 and pace.steady  # 400 tokens in 2 s
    assert pace.tokens_per_s(4, 1600) == 200.0


@pytest.mark.slow
def test_bf16_and_float32_runs_of_the_same_seed_end_at_the_same_loss(tmp_path: Path) -> None:
    """The demo (135M) trained 6 steps on the fact set in float32 and in bf16 (base in bf16 under autocast, LoRA in
    float32): the losses of every step agree within 2%, and both learn. A CPU without bf16 units emulates bf16 at a
    minute a step, so there the bf16 run is the first 2 of those steps (at a constant rate, the same steps whatever
    the run's length): its loss before and after an update agrees with float32's."""
    from tests.checkpoints import demo_hf_checkpoint
    from tuillm.core.models.hardware import cpu_bf16

    data = write_fact_dataset(tmp_path / "fact.jsonl", 24)
    bf16_steps, rate = (6, {}) if cpu_bf16() else (2, {"schedule": "constant", "warmup": 0})
    runs = {}
    for dtype, steps in (("float32", 6), ("bfloat16", bf16_steps)):
        events: list = []
        runs[dtype] = train(TrainConfig(base=str(demo_hf_checkpoint()), data=[str(data)], output=str(tmp_path / dtype),
                                        rank=8, alpha=16, dropout=0.0, max_len=96, batch_size=4, lr=2e-3,
                                        max_steps=steps, save_every=0, seed=3, device="cpu", dtype=dtype, **rate),
                            emit=events.append)
        assert any(isinstance(e, Log) and e.message.endswith(f"cpu, {dtype}") for e in events)
    f32, bf16 = ([r["loss"] for r in runs[d].loss_log] for d in ("float32", "bfloat16"))
    assert len(f32) == 6 and len(bf16) in (2, 6)
    assert bf16 == pytest.approx(f32[:len(bf16)], rel=0.02)
    assert f32[-1] < f32[0] / 2 and bf16[-1] < bf16[0] / (2 if bf16_steps == 6 else 1)  # both learn
