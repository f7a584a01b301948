"""Benchmark: the training-memory estimate (core.train.memory) against the peak RSS of real short runs on CPU.

Each setting runs 3 steps (``--steps``) of ``core.train.loop.train`` on the demo checkpoint in a fresh process and
reports its peak RSS (VmHWM, the whole process: what the estimate models) next to the estimate for the same
settings; the ratio estimate/measured is the figure of merit (goal: 0.85-1.15). Raw text examples longer than every
max length are used, so each row is full, plus one chat set where only the answers carry loss and one DPO run on
preference pairs (both sides in one pass, the reference pass without gradients).

``--dtype`` runs every setting in that dtype (default auto: bf16 on a CPU with AVX-512 BF16 or AMX, else float32);
the estimate is asked for the same dtype.

More steps show whether the peak keeps growing after the first ones (the allocator's pools, the optimizer's state
made at step 1): with ``--steps 12`` the peaks were 1-2% above those of 3 steps here (estimate/measured
0.95-0.99 against 0.96-1.01).

Run: .venv/bin/python tests/bench/train_memory.py [--quick] [--only N ...] [--steps N]
     [--dtype auto|float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SETTINGS = (
    {"max_len": 64, "batch_size": 1, "rank": 8},
    {"max_len": 256, "batch_size": 2, "rank": 32},
    {"max_len": 768, "batch_size": 1, "rank": 16},
    {"max_len": 512, "batch_size": 2, "rank": 16, "grad_checkpointing": True},
    {"max_len": 256, "batch_size": 2, "rank": 16, "packing": "row"},
    {"max_len": 384, "batch_size": 4, "rank": 16, "data": "chat"},
    {"max_len": 256, "batch_size": 2, "rank": 16, "data": "pairs", "method": "dpo"},
)

PROBE = r"""
import json, random, sys, tempfile
from pathlib import Path
from tuillm.core.train.loop import TrainConfig, train
setting, base, steps = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
folder = Path(tempfile.mkdtemp())
rng = random.Random(0)
words = "the model learns from examples of many lengths tokens padding batch memory speed adapter".split()
text = lambda n: " ".join(rng.choice(words) for _ in range(n))
data = setting.pop("data", "text")
if data == "chat":
    rows = [{"messages": [{"role": "user", "content": text(200)}, {"role": "assistant", "content": text(150)}]}
            for _ in range(16)]
elif data == "pairs":
    rows = [{"prompt": text(120), "chosen": text(100), "rejected": text(100)} for _ in range(16)]
else:
    rows = [{"text": text(1200)} for _ in range(16)]
(folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
train(TrainConfig(base=base, data=[str(folder / "d.jsonl")], output=str(folder / "out"), max_steps=steps,
                  device="cpu", save_every=0, **setting))
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
print(json.dumps({"peak": peak}))
"""


def trained_fraction(base: Path, setting: dict) -> float:
    """What the Train pane passes: the share of tokens that carry loss, from the preview of the same data."""
    data = setting.get("data")
    if data not in ("chat", "pairs"):
        return 1.0
    import random

    from tuillm.core.train.pairs import load_pairs, preview_pairs
    from tuillm.core.train.preview import base_tokenizer, preview

    rng = random.Random(0)
    words = "the model learns from examples of many lengths tokens padding batch memory speed adapter".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    if data == "chat":
        rows = [{"messages": [{"role": "user", "content": text(200)}, {"role": "assistant", "content": text(150)}]}
                for _ in range(16)]
    else:
        rows = [{"prompt": text(120), "chosen": text(100), "rejected": text(100)} for _ in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if data == "chat":
            p = preview(path, base_tokenizer(base), n=16, max_len=setting["max_len"])
        else:
            p = preview_pairs(load_pairs(path), base_tokenizer(base), n=16, max_len=setting["max_len"])
    return sum(e.trained_tokens for e in p.examples) / sum(min(e.tokens, setting["max_len"]) for e in p.examples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the first two settings only")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--only", type=int, nargs="*", help="the settings of these indices (0-based)")
    parser.add_argument("--steps", type=int, default=3, help="training steps of each run (default 3)")
    args = parser.parse_args()
    from tests.checkpoints import demo_hf_checkpoint
    from tuillm.core.train.memory import auto_dtype, estimate_training, model_shape

    base = demo_hf_checkpoint()
    shape = model_shape(base)
    ratios = []
    print(f"dtype {args.dtype} (auto here: {auto_dtype('cpu')}), {args.steps} steps a run")
    print(f"{'setting':<70} {'estimate':>9} {'measured':>9} {'ratio':>6}")
    chosen = SETTINGS[:2] if args.quick else [SETTINGS[i] for i in args.only] if args.only else SETTINGS
    for setting in chosen:
        setting = {**setting, "dtype": args.dtype}
        out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(setting), str(base), str(args.steps)],
                             capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            print(f"{json.dumps(setting)}: failed\n{out.stderr[-2000:]}")
            continue
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak"]
        kw = {k: v for k, v in setting.items() if k != "data"}
        est = estimate_training(shape, trained_fraction=trained_fraction(base, setting), **kw).total_bytes
        ratios.append(est / peak)
        print(f"{json.dumps(setting):<70} {est / 1e9:8.2f}G {peak / 1e9:8.2f}G {est / peak:6.2f}")
    if ratios:
        print(f"estimate/measured: min {min(ratios):.2f}, max {max(ratios):.2f} (goal 0.85-1.15)")


if __name__ == "__main__":
    main()
