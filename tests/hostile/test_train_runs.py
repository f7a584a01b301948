"""Hostile `tuillm train` runs on a tiny random base: an output that would be the current folder or would replace a
user's files, targets that name nothing, a learning rate that turns the adapter to inf, a checkpoint whose state.json
was edited. Each is one exact line and exit 1, and the run leaves nothing it made behind."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tuillm.core.events import Cancelled, Event, Progress
from tuillm.core.train.loop import TrainConfig, train
from tuillm.tui.cli import main

SMALL = ["--rank", "4", "--max-len", "64", "--batch-size", "2", "--device", "cpu", "--dtype", "float32", "-q"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fact_dataset(tmp_path_factory.mktemp("data") / "d.jsonl", 8)


def train_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("tuillm: "), err
    return err.removeprefix("tuillm: ").rstrip("\n")


def test_an_empty_output_is_not_the_current_folder(tiny: Path, data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `-o "$UNSET"` trained into the current folder: its README.md, training.json ... were written over.
    monkeypatch.chdir(tmp_path)
    argv = ["train", str(tiny), "--data", str(data), "-o", "", "--max-steps", "1", *SMALL]
    assert train_error(argv, capsys) == "no output folder named (an empty path)"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_the_user_s_files_is_not_written_over(tiny: Path, data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Only adapter_config.json was looked for: the adapter's README.md and training.json replaced the user's.
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "training.json").write_text("{}")
    argv = ["train", str(tiny), "--data", str(data), "-o", str(out), "--max-steps", "1", *SMALL]
    assert train_error(argv, capsys) == (f"{out}: already holds training.json, README.md, which the adapter would "
                                         "replace; choose another output folder, or --force replaces them")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "training.json"]
    assert (out / "README.md").read_text() == "my notes"


@pytest.mark.parametrize(("targets", "expected"), [
    # was "Targets: must be a non-empty text, not ''": the form's words, and not what was typed
    (",,", "--targets: must be module names (comma-separated), all-linear or default, not ',,'"),
    # a typo among good names was dropped silently: the adapter had fewer targets than asked
    ("q_proj,v_porj,o_porj", "no LoRA target module named v_porj, o_porj; this model's linear layers: down_proj, "
                             "gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"),
    # no module name holds an escape sequence: refused with the flag, shown escaped
    ("q_proj,\x1b[31m", "--targets: must be module names (comma-separated), all-linear or default, not "
                        "'q_proj,\\x1b[31m'"),
])
def test_targets_that_name_nothing(tiny: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   targets: str, expected: str) -> None:
    argv = ["train", str(tiny), "--data", str(data), "-o", str(tmp_path / "out"), "--targets", targets, *SMALL]
    assert train_error(argv, capsys) == expected
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flags", "expected"), [
    # The first loss is fine; the one optimizer step makes every weight inf: an adapter of NaNs was written.
    (["--lr", "1e308", "--max-steps", "1"], "the adapter's weights are not finite after step 1 (base_model.model."
                                            "model.layers.0.self_attn.q_proj.lora_A.default.weight): training "
                                            "diverged; lower --lr (or --alpha) and train again"),
    # Refused at step 1, but the output folder the run had made stayed behind, empty.
    (["--alpha", "1e308", "--max-steps", "3"], "the loss is nan at step 1: training diverged; lower --lr (or --alpha) "
                                               "and train again"),
])
def test_a_run_that_diverges_leaves_nothing(tiny: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            flags: list[str], expected: str) -> None:
    argv = ["train", str(tiny), "--data", str(data), "-o", str(tmp_path / "out"), *flags, *SMALL]
    assert train_error(argv, capsys) == expected
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def stopped(tiny: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a run cancelled after step 2 of 6: its checkpoint step-0000002 to resume from."""
    out = tmp_path_factory.mktemp("stopped") / "out"
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and event.stage == "train" and event.done == 2:
            cancel.set()

    config = TrainConfig(base=str(tiny), data=[str(data)], output=str(out), rank=4, max_len=64, batch_size=2,
                         max_steps=6, save_every=0, device="cpu", dtype="float32")
    with pytest.raises(Cancelled):
        train(config, emit=emit, cancel=cancel)
    assert (out / "checkpoints" / "step-0000002" / "state.json").is_file()
    return out


def _drop(meta: dict, key: str) -> None:
    del meta[key]


@pytest.mark.parametrize(("edit", "why"), [
    # each was "unexpected error: KeyError / ValueError / TypeError / AttributeError"
    (lambda m: _drop(m, "step"), "step null is not the step of step-0000002"),
    (lambda m: m.update(step="abc"), 'step "abc" is not the step of step-0000002'),
    (lambda m: m.update(loss_log=5), "the loss log is not a list of step records (a step and a finite loss each)"),
    (lambda m: m.update(tokens=[1]), "tokens [1] is not a count"),
    (lambda m: m.update(fingerprint=[1]), "the fingerprint is not an object"),
    # these resumed: 10**30 wrote an adapter of 10**30 steps without training, -5 trained "steps" -5 to 6
    (lambda m: m.update(step=10**30), "step 1000000000000000000000000000000 is not the step of step-0000002"),
    (lambda m: m.update(step=-5), "step -5 is not the step of step-0000002"),
], ids=["no step", "step text", "log", "tokens", "fingerprint", "step huge", "step negative"])
def test_an_edited_checkpoint_is_named_damaged(stopped: Path, data: Path, tiny: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str], edit: object, why: str) -> None:
    out = Path(shutil.copytree(stopped, tmp_path / "out"))
    checkpoint = out / "checkpoints" / "step-0000002"
    meta = json.loads((checkpoint / "state.json").read_text())
    edit(meta)  # type: ignore[operator]
    (checkpoint / "state.json").write_text(json.dumps(meta))
    argv = ["train", str(tiny), "--data", str(data), "-o", str(out), "--max-steps", "6", "--resume", *SMALL]
    assert train_error(argv, capsys) == (f"{checkpoint}: a damaged checkpoint (state.json: {why}); delete it to resume "
                                         "from the one before, or train afresh with --force")
    assert not (out / "adapter_config.json").exists()


def _spoil(checkpoint: Path, file: str, key: str, value: str) -> str:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(checkpoint / file))
    key = key or next(iter(sorted(tensors)))
    tensors[key] = torch.zeros(1) if value == "shape" else torch.full_like(tensors.get(key, torch.zeros(3)), torch.nan)
    save_file(tensors, str(checkpoint / file))
    return key


@pytest.mark.parametrize(("file", "key", "value", "why"), [
    # was "unexpected error: RuntimeError: output with shape [1] doesn't match the broadcast shape" at the next step
    ("optimizer.safetensors", "0.exp_avg", "shape", "0.exp_avg does not fit the adapter's weights"),
    # these resumed, then said "the loss is nan at step 4: training diverged; lower --lr": no setting was to blame
    ("optimizer.safetensors", "0.exp_avg_sq", "nan", "0.exp_avg_sq does not fit the adapter's weights"),
    ("adapter.safetensors", "", "nan", "{key} is missing, of another shape or dtype, or not finite"),
    # the state of a weight that does not exist was dropped without a word
    ("optimizer.safetensors", "99999.exp_avg", "nan", "99999.exp_avg does not fit the adapter's weights"),
], ids=["moment shape", "moment nan", "adapter nan", "stray moment"])
def test_spoiled_checkpoint_tensors_are_named_damaged(stopped: Path, data: Path, tiny: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], file: str, key: str,
                                                      value: str, why: str) -> None:
    out = Path(shutil.copytree(stopped, tmp_path / "out"))
    checkpoint = out / "checkpoints" / "step-0000002"
    key = _spoil(checkpoint, file, key, value)
    argv = ["train", str(tiny), "--data", str(data), "-o", str(out), "--max-steps", "6", "--resume", *SMALL]
    assert train_error(argv, capsys) == (f"{checkpoint}: a damaged checkpoint ({file}: {why.format(key=key)}); delete "
                                         "it to resume from the one before, or train afresh with --force")
    assert not (out / "adapter_config.json").exists()


def test_an_adapter_of_ours_is_refused_for_another_architecture(tiny: Path, data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adapter"
    assert main(["train", str(tiny), "--data", str(data), "-o", str(out), "--max-steps", "1", *SMALL]) == 0
    assert json.loads((out / "training.json").read_text())["base_model_type"] == "llama"
    qwen = tiny_random_checkpoint("qwen2", tmp_path / "qwen2")  # every layer the llama's shape
    capsys.readouterr()
    argv = ["export-lora", str(out), "--base", str(qwen), "-o", str(tmp_path / "a.gguf")]
    assert train_error(argv, capsys) == (f"{out} was trained on a llama model, and {qwen} is a qwen2 model; give "
                                         "the base it was trained on")
    assert not (tmp_path / "a.gguf").exists()


def test_a_resume_with_no_step_left_or_other_data_is_one_line(stopped: Path, data: Path, tiny: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Both went on without a word: --max-steps 1 wrote the step-2 checkpoint as an adapter of "steps: 2", and other
    # data was trained on from the checkpoint's weights and order.
    out = Path(shutil.copytree(stopped, tmp_path / "out"))
    checkpoint = out / "checkpoints" / "step-0000002"
    argv = ["train", str(tiny), "--data", str(data), "-o", str(out), "--max-steps", "1", "--resume", *SMALL]
    assert train_error(argv, capsys) == (f"{checkpoint}: the checkpoint is at step 2 and --max-steps is 1: no step is "
                                         "left to train; raise --max-steps above 2, or use another output folder")
    other = write_fact_dataset(tmp_path / "other.jsonl", 8, seed=1)
    argv = ["train", str(tiny), "--data", str(other), "-o", str(out), "--max-steps", "6", "--resume", *SMALL]
    assert train_error(argv, capsys) == (f"{checkpoint}: the checkpoint was trained on other data (it was trained on "
                                         f"{data.resolve()}, not {other.resolve()}); resume with the same data, or "
                                         "use another output folder")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
