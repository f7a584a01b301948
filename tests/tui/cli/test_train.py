"""``tuillm train``, ``merge`` and ``export-lora`` through the real binary: bad inputs give one line and exit 1
before any training; end to end on the demo, a made-up fact is learned and llama.cpp states it, both from the
merged q8_0 GGUF and from the base GGUF with the exported adapter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint, tiny_random_checkpoint
from tests.core.train_facts import FACT_WORD, QUESTION, write_fact_dataset
from tuillm.core.models.hardware import cpu_bf16

TUILLM = str(Path(sys.executable).with_name("tuillm"))


def tuillm(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuillm: "), out.stderr[-2000:]
    return lines[0]


def test_missing_dataset_file(tmp_path: Path) -> None:
    out = tuillm("train", "demo", "--data", str(tmp_path / "d.jsonl"), "-o", str(tmp_path / "out"))
    assert "d.jsonl: no such file" in one_line_error(out)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("rows", "expected"), [
    (['{"text": "fine"}', "{oops", '{"text": "fine"}', "[1, 2", "not json"],
     "3 invalid JSON lines (lines 2, 4, 5)"),
    ([], "empty file"),
    # Nested past the JSON parser's depth: it was "unexpected error: RecursionError".
    (['{"text": "fine"}', "[" * 100_000 + "]" * 100_000, '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"],
     "2 invalid JSON lines (lines 2, 3)"),
    (['{"prompt": "a", "completion": "b"}', '{"prompt": "a"}'], "line 2: field 'completion' missing"),
])
def test_bad_datasets_are_refused_before_training(tmp_path: Path, rows: list[str], expected: str) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(r + "\n" for r in rows))
    out = tuillm("train", "demo", "--data", str(data), "-o", str(tmp_path / "out"))
    assert expected in one_line_error(out)
    assert not (tmp_path / "out").exists()


def test_every_example_too_long(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "word " * 80, "completion": "yes"}) + "\n")
    out = tuillm("train", str(demo_hf_checkpoint()), "--data", str(data), "-o", str(tmp_path / "out"),
                 "--max-len", "32")
    assert "every example is longer than the max length 32" in one_line_error(out)
    assert not (tmp_path / "out").exists()


def test_bad_settings_and_adapter_of_another_model(tmp_path: Path) -> None:
    data = write_fact_dataset(tmp_path / "d.jsonl", 4)
    out = tuillm("train", "demo", "--data", str(data), "-o", str(tmp_path / "out"), "--rank", "0")
    assert "--rank: must be a whole number from 1 to 65536, not '0'" in one_line_error(out)

    from tests.convert.test_lora_to_gguf import make_adapter

    other = tiny_random_checkpoint("llama", tmp_path / "tiny")
    adapter = make_adapter(other, tmp_path / "adapter")
    demo = str(demo_hf_checkpoint())
    out = tuillm("export-lora", str(adapter), "--base", demo, "-o", str(tmp_path / "a.gguf"))
    assert "does not fit the base" in one_line_error(out)
    out = tuillm("merge", demo, str(adapter), "-o", str(tmp_path / "m.gguf"))
    assert "does not fit the base" in one_line_error(out)
    out = tuillm("merge", demo, str(tmp_path), "-o", str(tmp_path / "m.gguf"))
    assert "no adapter_config.json" in one_line_error(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "d.jsonl", "tiny"]


def test_merge_and_export_to_an_unwritable_folder_are_refused_before_the_base_dequantizes(
        tmp_path: Path, isolated_home: Path) -> None:
    from tests.convert.test_lora_to_gguf import make_adapter

    adapter = make_adapter(tiny_random_checkpoint("llama", tmp_path / "tiny"), tmp_path / "adapter")
    out = tuillm("merge", "demo", str(adapter), "-o", "/sys/m.gguf")
    assert one_line_error(out) == "tuillm: /sys: not writable"
    out = tuillm("export-lora", str(adapter), "--base", "demo", "-o", "/sys/a.gguf")
    assert one_line_error(out) == "tuillm: /sys: not writable"
    assert not (isolated_home / ".cache" / "tuillm" / "dequantized").exists()


def test_a_bad_hf_endpoint_does_not_stop_a_run_that_never_asks_the_hub(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's import (transformers') fails on an HF_ENDPOINT it cannot parse: training a local folder
    ended in a crash report naming a ValueError. pull and search still refuse it (tests/tui/cli/test_pull.py)."""
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    monkeypatch.setenv("HF_ENDPOINT", "http://[")  # for the command only (this process imported the library)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n{"text": "world"}\n')
    out = tuillm("train", str(base), "--data", str(data), "-o", str(tmp_path / "out"), "--max-steps", "1", "-q")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "out" / "adapter_config.json").is_file()


def test_quant_4bit_without_cuda_is_one_line(tmp_path: Path, isolated_home: Path) -> None:
    """QLoRA on a machine without CUDA: one line and exit 1 before anything is loaded or written: a GGUF base
    (the demo, this test's cache empty) is not dequantized first."""
    data = write_fact_dataset(tmp_path / "d.jsonl", 4)
    out = tuillm("train", "demo", "--data", str(data), "-o", str(tmp_path / "out"), "--quant", "4bit", "--device",
                 "cpu", "-q")
    assert "--quant 4bit (QLoRA) needs a CUDA GPU (bitsandbytes' 4-bit kernels); this run is on cpu" in (
        one_line_error(out))
    assert not (tmp_path / "out").exists()
    assert not (isolated_home / ".cache" / "tuillm" / "dequantized").exists()


def test_flags_are_the_declared_options() -> None:
    """Every training option is a flag of ``tuillm train`` with the declared default, and only those (plus the
    command's own arguments); the flag names users know are kept."""
    from tuillm.core.train.options import TRAIN_OPTIONS
    from tuillm.tui.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    flags = {a.dest: a for a in sub._actions}
    assert set(flags) - {"help", "base", "data", "output", "quiet", "force"} == {o.name for o in TRAIN_OPTIONS}
    for option in TRAIN_OPTIONS:
        assert option.cli_flag in flags[option.name].option_strings and flags[option.name].default == option.default
    known = ("--rank --alpha --dropout --targets --max-len --train-on-prompt --eval-split --eval-every --epochs "
             "--max-steps --batch-size --grad-accum --lr --schedule --warmup --grad-checkpointing --packing --seed "
             "--save-every --resume --device --dtype --log-every --nproc --fsdp --method --beta --quant").split()
    assert sorted(known) == sorted(o.cli_flag for o in TRAIN_OPTIONS)


HUGE = "1" + "0" * 400  # a pasted number


@pytest.mark.parametrize(("flag", "text", "expected"), [
    ("--lr", "nan", "--lr: must be a number above 0, not 'nan'"),
    ("--epochs", "nan", "--epochs: must be a number above 0 and at most 10000, not 'nan'"),
    ("--alpha", "inf", "--alpha: must be a number above 0, not 'inf'"),
    ("--device", "banana", "--device: must be one of auto, cpu, cuda, mps, not 'banana'"),
    ("--rank", "0", "--rank: must be a whole number from 1 to 65536, not '0'"),
    ("--dropout", "1", "--dropout: must be a number at least 0 and below 1, not '1'"),
    ("--quant", "8bit", "--quant: must be one of none, 4bit, not '8bit'"),
    # Above 1e308 a batch made a plan of no micro-batches: ZeroDivisionError, a crash log.
    ("--batch-size", HUGE, f"--batch-size: must be a whole number from 1 to 1048576, not '{HUGE[:59]}…"),
])
def test_bad_flags_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                            text: str, expected: str) -> None:
    from tuillm.tui.cli import main

    missing = tmp_path / "missing.jsonl"  # the flag is refused before the data is even read
    assert main(["train", "demo", "--data", str(missing), "-o", str(tmp_path / "out"), flag, text]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"tuillm: {expected}"]
    assert not (tmp_path / "out").exists()


def ask(model: str, *extra: str) -> str:
    out = tuillm("chat", model, "--prompt", QUESTION, "--temp", "0", "--max-tokens", "32", *extra)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
def test_train_merge_export_and_chat_on_the_demo(tmp_path: Path, isolated_home: Path) -> None:
    """From the demo GGUF itself: dequantized once (cached in this test's XDG cache), trained in bf16 (the base in
    bf16 under autocast, LoRA in float32; float32 runs: the --nproc test below), merged, exported. On a CPU without
    bf16 units PyTorch emulates it, over 10x slower (this run passed 10 minutes on an AVX2-only machine): float32
    there; core/train's tests run the bf16 loop on the demo wherever they run."""
    data = write_fact_dataset(tmp_path / "fact.jsonl", 24)
    adapter = tmp_path / "adapter"
    dtype = "bfloat16" if cpu_bf16() else "float32"
    out = tuillm("train", "demo", "--data", str(data), "-o", str(adapter), "--rank", "8",
                 "--alpha", "16", "--dropout", "0", "--max-len", "96", "--batch-size", "8", "--epochs", "3",
                 "--lr", "2e-3", "--eval-split", "0.1", "--save-every", "4", "--dtype", dtype)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"cpu, {dtype}" in out.stderr and "set-up " in out.stderr
    assert "2.44M trainable of 137M parameters" in out.stderr  # the base's 135M and the adapter's
    assert out.stdout.strip() == str(adapter)
    assert "dequantizing it once" in out.stderr and "GB on disk" in out.stderr
    lines = out.stderr.splitlines()  # while the base dequantizes, our progress alone (no library's own bar)
    start = next(i for i, line in enumerate(lines) if line.startswith("dequantize: 0"))
    assert lines[start + 1] == "dequantize: 100% done", lines[start:start + 3]
    assert "messages format" in out.stderr and "step 9/9" in out.stderr and "eval" in out.stderr
    assert {"adapter_config.json", "adapter_model.safetensors", "training.json", "loss_log.jsonl"} <= {
        p.name for p in adapter.iterdir()}
    assert not (adapter / "checkpoints").exists()
    log = [json.loads(line) for line in (adapter / "loss_log.jsonl").read_text().splitlines()]
    assert len(log) == 9 and log[-1]["loss"] < log[0]["loss"] / 3 and "eval_loss" in log[-1]
    params = json.loads((adapter / "training.json").read_text())
    assert params["rank"] == 8 and params["steps"] == 9
    assert Path(params["base_folder"]).is_relative_to(isolated_home)

    merged = tmp_path / "merged.gguf"
    out = tuillm("merge", "demo", str(adapter), "-o", str(merged), "--type", "q8_0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "using the dequantized copy" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "fact.jsonl", "merged.gguf"]  # no temp left
    lora = tmp_path / "adapter.gguf"
    out = tuillm("export-lora", str(adapter), "--base", "demo", "-o", str(lora))
    assert out.returncode == 0, out.stderr[-3000:]

    base_answer = ask("demo")
    merged_answer = ask(str(merged))
    lora_answer = ask("demo", "--lora", str(lora))
    assert FACT_WORD not in base_answer
    assert FACT_WORD in merged_answer, merged_answer
    assert FACT_WORD in lora_answer, lora_answer


def test_train_help_imports_no_torch(tmp_path: Path) -> None:
    code = ("import contextlib, io, json, sys\nfrom tuillm.tui.cli import main\n"
            "for cmd in ('train', 'merge', 'export-lora'):\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try:\n            main([cmd, '--help'])\n        except SystemExit:\n            pass\n"
            "    assert '--output' in out.getvalue() or '-o' in out.getvalue()\n"
            "print(json.dumps([m for m in ('torch', 'transformers', 'peft') if m in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    import signal

    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = write_fact_dataset(tmp_path / "d.jsonl", 8)
    out = tmp_path / "adapter"
    args = [TUILLM, "train", str(base), "--data", str(data), "-o", str(out), "--rank", "4", "--max-len", "64",
            "--batch-size", "2", "--max-steps", "20", "--save-every", "0"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stderr is not None
    for line in proc.stderr:  # interrupt once training is under way
        if line.startswith("step 1/20"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "cancelled after step" in rest and "--resume" in rest
    assert not (out / "adapter_config.json").exists()
    assert list((out / "checkpoints").glob("step-*"))

    done = tuillm("train", *args[2:], "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from step-" in done.stderr
    log = (out / "loss_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == list(range(1, 21))


def rank_pid(parent: int, rank: int, timeout: float = 60) -> int:
    """The pid of training rank ``rank`` among ``parent``'s children (bounded wait)."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(parent).children():
            try:
                if child.environ().get("RANK") == str(rank):
                    return child.pid
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} under {parent}")


@pytest.mark.cores(2)
def test_nproc_refusals_are_one_line(tmp_path: Path) -> None:
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = write_fact_dataset(tmp_path / "d.jsonl", 4)
    common = ("train", str(base), "--data", str(data), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert "--nproc 512: this machine has" in one_line_error(tuillm(*common, "--nproc", "512"))
    assert "--fsdp needs --nproc 2 or more" in one_line_error(tuillm(*common, "--fsdp"))
    assert "--fsdp shards a base of full-precision weights: leave out --quant" in one_line_error(
        tuillm(*common, "--nproc", "2", "--fsdp", "--quant", "4bit"))
    assert "--nproc: must be a whole number at least 1, not '0'" in one_line_error(tuillm(*common, "--nproc", "0"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "tiny"]


@pytest.mark.cores(2)
def test_a_killed_rank_ends_the_run_in_one_line_and_resume_finishes(tmp_path: Path) -> None:
    """``--nproc 2``: SIGKILL to rank 1 mid-run; the other rank fails its all-reduce at once, rank 0 saves the last
    whole step, the run exits 1 with one line naming the rank; --resume (in one process, or two) finishes."""
    import signal

    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = write_fact_dataset(tmp_path / "d.jsonl", 8)
    out = tmp_path / "adapter"
    args = [TUILLM, "train", str(base), "--data", str(data), "-o", str(out), "--rank", "4", "--max-len", "64",
            "--batch-size", "2", "--max-steps", "12", "--save-every", "0", "--dropout", "0", "--nproc", "2"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("step 2/12"):
            os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 1, rest
    lines = [line for line in rest.splitlines() if line.startswith("tuillm: ")]
    assert len(lines) == 1 and "Traceback" not in rest, rest
    assert lines[0].startswith("tuillm: training rank 1 was killed by SIGKILL; rank 0: "), lines[0]
    assert "--resume continues it" in lines[0]
    # Each rank's whole output is kept where the line says (rank 0's shows it lost its peer); only then.
    logs = Path(lines[0].rsplit(" is kept in ", 1)[1])
    assert sorted(p.name for p in logs.iterdir()) == ["rank-0.log", "rank-1.log"]
    assert (logs / "rank-0.log").read_text().strip()
    shutil.rmtree(logs)
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert saved and int(saved[-1][5:]) >= 2 and not (out / "adapter_config.json").exists()
    assert not list(out.glob(".*")) and not list((out / "checkpoints").glob(".*"))  # no half-written checkpoint

    before = set(Path(tempfile.gettempdir()).glob("tuillm-ranks-*"))
    done = tuillm(*args[1:], "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {saved[-1]}" in done.stderr
    assert set(Path(tempfile.gettempdir()).glob("tuillm-ranks-*")) == before  # a run that ended well keeps none
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))


@pytest.mark.cores(2)
@pytest.mark.slow
def test_two_processes_teach_the_fact(tmp_path: Path) -> None:
    """The teach-a-fact run above (same data and settings, from the demo's HF checkpoint) with ``--nproc 2``: the
    merged model states the fact through llama.cpp."""
    data = write_fact_dataset(tmp_path / "fact.jsonl", 24)
    adapter = tmp_path / "adapter"
    out = tuillm("train", str(demo_hf_checkpoint()), "--data", str(data), "-o", str(adapter), "--rank", "8",
                 "--alpha", "16", "--dropout", "0", "--max-len", "96", "--batch-size", "8", "--epochs", "3",
                 "--lr", "2e-3", "--eval-split", "0.1", "--nproc", "2", "--dtype", "float32")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(adapter)  # printed once: by rank 0
    assert "starting 2 training processes" in out.stderr and out.stderr.count("step 9/9") == 1
    log = [json.loads(line) for line in (adapter / "loss_log.jsonl").read_text().splitlines()]
    assert len(log) == 9 and log[-1]["loss"] < log[0]["loss"] / 3 and "eval_loss" in log[-1]
    merged = tmp_path / "merged.gguf"
    out = tuillm("merge", str(demo_hf_checkpoint()), str(adapter), "-o", str(merged), "--type", "q8_0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert FACT_WORD in ask(str(merged))


@pytest.mark.cores(2)
def test_torchrun_of_tuillm_train_is_one_run(tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 2 tuillm train …``: each process finds RANK/WORLD_SIZE and joins the group; rank 0
    alone reports, writes and prints the adapter (that the curve is one process's: tests/core/train/
    test_distributed.py)."""
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = write_fact_dataset(tmp_path / "d.jsonl", 8)
    adapter = tmp_path / "two"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          TUILLM, "train", str(base), "--data", str(data), "-o", str(adapter), "--rank", "4",
                          "--max-len", "64", "--batch-size", "3", "--max-steps", "3", "--save-every", "2"],
                         capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(adapter)
    assert out.stderr.count("step 3/3:") == 1 and "Traceback" not in out.stderr
    assert [json.loads(line)["step"] for line in (adapter / "loss_log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "checkpoints").exists()


def test_ctrl_c_pressed_on_as_the_run_exits_is_not_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C saves a checkpoint; a user pressing it on while the process exits (torch's atexit work, about a second)
    got "Exception ignored in atexit callback … Traceback … KeyboardInterrupt" and an end by SIGINT, not 130."""
    import signal
    import time

    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    data = write_fact_dataset(tmp_path / "d.jsonl", 200)
    out = tmp_path / "adapter"
    proc = subprocess.Popen([TUILLM, "train", str(base), "--data", str(data), "-o", str(out), "--rank", "4",
                             "--max-len", "64", "--batch-size", "1", "--save-every", "0", "--device", "cpu",
                             "--dtype", "float32"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("step 2/"):
            proc.send_signal(signal.SIGINT)
        if line.startswith("warning: cancelled"):
            break
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    rest = proc.stderr.read()
    assert proc.returncode == 130 and "Traceback" not in rest, (proc.returncode, rest[-2000:])
    assert len(list((out / "checkpoints").iterdir())) == 1
