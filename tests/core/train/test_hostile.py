"""Hostile run folders. --resume from checkpoints that were tampered with: each is refused in one line naming the
checkpoint (never waited on, never trained on with the file's own optimizer settings, never carried onto another
model); an output folder that cannot be one is refused before the base loads.

One interrupted run of a tiny random Llama is made per module; each test damages its own copy."""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Metric
from tuillm.core.train.checkpoints import latest_checkpoint, load_checkpoint
from tuillm.core.train.loop import train
from tuillm.core.train.options import TrainConfig


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bases")
    tiny_random_checkpoint("llama", root / "llama")
    return root


def config(base: Path, out: Path, **kw: object) -> TrainConfig:
    data = out.parent / "d.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"text": f"hello world number {i}"}) + "\n" for i in range(8)))
    values = dict(base=str(base), data=[str(data)], output=str(out), rank=4, max_len=32, batch_size=2, max_steps=4,
                  save_every=1, device="cpu", dtype="float32")
    return TrainConfig(**{**values, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cut(bases: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tiny Llama stopped after step 2 (checkpoints of steps 1 and 2)."""
    out = tmp_path_factory.mktemp("cut") / "run"
    cancel = threading.Event()

    def stop_after_step_2(event: object) -> None:
        if isinstance(event, Metric) and event.name == "loss" and event.step == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        train(config(bases / "llama", out), emit=stop_after_step_2, cancel=cancel)
    return out


@pytest.fixture
def run(cut: Path, tmp_path: Path) -> Path:
    """This test's copy of the interrupted run."""
    return Path(shutil.copytree(cut, tmp_path / "run"))


def _retype(path: Path, dtype: str, only: str | None = None) -> None:
    """The safetensors file with its tensors (or the one named ``only``) declared of another dtype of the same
    width: the same bytes, read as other numbers."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for name, entry in header.items():
        if name != "__metadata__" and (only is None or name == only):
            entry["dtype"] = dtype
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def test_a_checkpoint_file_that_is_a_fifo_is_refused_not_waited_on(bases: Path, run: Path) -> None:
    """A FIFO named adapter.safetensors blocked the resume for ever (the open waits for a writer)."""
    checkpoint = latest_checkpoint(run)
    fifo = checkpoint / "adapter.safetensors"
    fifo.unlink()
    os.mkfifo(fifo)
    # Without the check, this writer lets the blocked open through (with bytes that are no safetensors), so the
    # test ends either way; with it, the writer is let go below.
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"\x08" + bytes(15)), daemon=True)
    writer.start()
    try:
        with pytest.raises(TuillmError) as refused:
            train(config(bases / "llama", run, resume=True))
    finally:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held until the writer has written
        writer.join(timeout=30)
        os.close(reader)
    assert str(refused.value) == (f"{checkpoint}: a damaged checkpoint (adapter.safetensors is not a file); delete "
                                  "it to resume from the one before, or train afresh with --force")


@pytest.mark.parametrize(("name", "only", "why"), [
    ("adapter.safetensors", None, "adapter.safetensors: base_model.model.model.layers.0.mlp.down_proj.lora_A.weight "
                                  "is missing, of another shape or dtype, or not finite"),
    ("optimizer.safetensors", "0.exp_avg", "optimizer.safetensors: 0.exp_avg does not fit the adapter's weights"),
])
def test_weights_of_another_dtype_are_a_damaged_checkpoint(bases: Path, run: Path, name: str, only: str | None,
                                                           why: str) -> None:
    """float32 bytes declared int32 were loaded as huge numbers: the run went on and reported a divergence ("lower
    --lr"), or trained with moments off by orders of magnitude."""
    checkpoint = latest_checkpoint(run)
    _retype(checkpoint / name, "I32", only)
    with pytest.raises(TuillmError) as refused:
        train(config(bases / "llama", run, resume=True))
    assert str(refused.value) == (f"{checkpoint}: a damaged checkpoint ({why}); delete it to resume from the one "
                                  "before, or train afresh with --force")


def _peft_and_adamw(base: Path, cfg: TrainConfig):  # noqa: ANN202 - torch types, imported here
    import torch

    from tuillm.core.events import ignore
    from tuillm.core.train.model import lora_model

    model = lora_model(cfg, base, "cpu", "float32", ignore)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    return model, optimizer


def test_the_optimizer_settings_are_the_runs_not_the_checkpoints(bases: Path, run: Path) -> None:
    """state.json's param_groups were loaded as they stood: an edited file turned AdamW into gradient ascent
    (maximize) with a negative eps, and the run went on."""
    checkpoint = latest_checkpoint(run)
    state = json.loads((checkpoint / "state.json").read_text())
    state["param_groups"][0].update(maximize=True, eps=-1.0, betas=[2.0, 2.0], weight_decay=5.0)
    (checkpoint / "state.json").write_text(json.dumps(state))
    cfg = config(bases / "llama", run, resume=True)
    model, optimizer = _peft_and_adamw(bases / "llama", cfg)
    fresh = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    load_checkpoint(checkpoint, model, optimizer, cfg)
    assert {k: v for k, v in optimizer.param_groups[0].items() if k != "params"} == fresh
    assert optimizer.state  # the moments were loaded


def test_an_optimizer_step_count_past_the_checkpoints_step_is_damaged(bases: Path, run: Path) -> None:
    """AdamW's step count sets its bias correction: 1e300 (of a checkpoint of step 2) was taken as it stood."""
    checkpoint = latest_checkpoint(run)
    state = json.loads((checkpoint / "state.json").read_text())
    state["scalars"]["0"]["step"] = 1e300
    (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.raises(TuillmError, match=r"damaged checkpoint \(state.json: the optimizer's step of 0 is 1e\+300\)"):
        train(config(bases / "llama", run, resume=True))


def test_a_checkpoint_of_another_architecture_is_refused(bases: Path, run: Path) -> None:
    """A Llama run resumed onto a Qwen2 base of the same shapes trained on, and its adapter said qwen2."""
    qwen = tiny_random_checkpoint("qwen2", run.parent / "qwen2")
    checkpoint = latest_checkpoint(run)
    with pytest.raises(TuillmError) as refused:
        train(config(qwen, run, resume=True))
    assert str(refused.value) == (f"{checkpoint}: the checkpoint was made on a llama model, and this base is a "
                                  "qwen2 model; resume with the base it was trained on, or use another output "
                                  "folder")
    assert not (run / "adapter_config.json").exists()
    assert latest_checkpoint(run) == checkpoint  # kept as it was


def test_an_output_that_is_a_broken_symlink_is_refused_before_loading(bases: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """It passed the checks, the base loaded, then making the folder crashed (unexpected error: FileExistsError)."""
    from tuillm.core.train import base as train_base

    monkeypatch.setattr(train_base, "load_model", lambda *a, **kw: pytest.fail("the base was loaded"))
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone" / "adapter")
    with pytest.raises(TuillmError) as refused:
        train(config(bases / "llama", link))
    assert str(refused.value) == (f"{link}: a broken symbolic link (to {tmp_path / 'gone' / 'adapter'}); remove "
                                  "it or choose another output folder")
    assert link.is_symlink() and not (tmp_path / "gone").exists()
