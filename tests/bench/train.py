"""Benchmark: ``tuillm train`` vs a plain transformers Trainer + peft script, in the same run.

Same model (the demo, as an HF checkpoint), same data (chat examples of mixed lengths), same LoRA rank and
targets, batch size, max length and epochs. The baseline uses dynamic padding with transformers' default causal
LM collator, as a typical script does. Each run is a fresh process; prints wall time, tokens/s (real, unpadded
tokens of the data / wall time) and peak RSS, and the ratios (goal: >= 1.5x tokens/s, <= 0.7x peak RSS).

Run: .venv/bin/python tests/bench/train.py [--examples 64] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import PEAK_RSS, run_child  # noqa: E402

RANK, ALPHA, BATCH, MAX_LEN, LR = 16, 32, 4, 256, 2e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

TUILLM = PEAK_RSS + """
import json, sys, time
from tuillm.tui.cli import main
base, data, out, epochs = sys.argv[1:5]
s = json.loads(sys.argv[5])
t = time.perf_counter()
code = main(["train", base, "--data", data, "-o", out, "--rank", str(s["rank"]), "--alpha", str(s["alpha"]),
             "--batch-size", str(s["batch"]), "--max-len", str(s["max_len"]), "--lr", str(s["lr"]),
             "--epochs", epochs, "--dropout", "0.05", "--device", "cpu", "--targets", ",".join(s["targets"]), "-q"])
assert code == 0
print(json.dumps({"wall": time.perf_counter() - t, "rss_mb": peak_rss_mb()}))
"""

# The usual script: tokenize with the chat template, Trainer with the default collator (dynamic padding).
BASELINE = PEAK_RSS + """
import json, sys, time
base, data, out, epochs = sys.argv[1:5]
s = json.loads(sys.argv[5])
t = time.perf_counter()
import torch
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)
tok = AutoTokenizer.from_pretrained(base)
rows = [json.loads(l) for l in open(data)]
feats = [{"input_ids": tok.apply_chat_template(r["messages"], tokenize=True,
                                               return_dict=True)["input_ids"][:s["max_len"]]} for r in rows]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
lora = LoraConfig(r=s["rank"], lora_alpha=s["alpha"], lora_dropout=0.05, target_modules=s["targets"],
                  task_type="CAUSAL_LM")
model = get_peft_model(model, lora)
args = TrainingArguments(output_dir=out, per_device_train_batch_size=s["batch"], num_train_epochs=float(epochs),
                         learning_rate=s["lr"], lr_scheduler_type="cosine", warmup_steps=0.03, save_strategy="no",
                         report_to=[], logging_steps=10, use_cpu=True, disable_tqdm=True, seed=0)
Trainer(model=model, args=args, train_dataset=feats,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False)).train()
model.save_pretrained(out)
print(json.dumps({"wall": time.perf_counter() - t, "rss_mb": peak_rss_mb()}))
"""


def make_data(path: Path, n: int) -> None:
    """Chat examples from a few to a couple of hundred tokens: real data is uneven, which padding pays for."""
    rng = random.Random(0)
    words = ("the model learns from examples of many lengths and some are long while others are short "
             "tokens padding batch memory speed adapter rank alpha").split()
    rows = []
    for _ in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(3, 40)))
        a = " ".join(rng.choice(words) for _ in range(rng.choice([5, 10, 20, 60, 150])))
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def count_tokens(base: Path, data: Path) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    total = 0
    for line in data.read_text().splitlines():
        ids = tok.apply_chat_template(json.loads(line)["messages"], tokenize=True, return_dict=True)["input_ids"]
        total += min(len(ids), MAX_LEN)
    return total


SETTINGS = json.dumps({"rank": RANK, "alpha": ALPHA, "batch": BATCH, "max_len": MAX_LEN, "lr": LR, "targets": TARGETS})


def run(code: str, *args: str) -> dict:
    return run_child(code, *args, SETTINGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=1.0)
    opts = parser.parse_args()

    from tests.checkpoints import demo_hf_checkpoint

    base = demo_hf_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(data, opts.examples)
        tokens = count_tokens(base, data) * opts.epochs
        print(f"demo model, {opts.examples} examples ({tokens:.0f} tokens x {opts.epochs:g} epochs), rank {RANK}, "
              f"batch {BATCH}, max length {MAX_LEN}, CPU")
        ours = run(TUILLM, str(base), str(data), str(Path(tmp) / "ours"), str(opts.epochs))
        print(f"tuillm train: {ours}", flush=True)
        theirs = run(BASELINE, str(base), str(data), str(Path(tmp) / "theirs"), str(opts.epochs))
    for name, r in (("tuillm train", ours), ("Trainer + peft", theirs)):
        print(f"{name:16} {r['wall']:7.1f} s  {tokens / r['wall']:8.1f} tokens/s  peak RSS {r['rss_mb']:7.0f} MB")
    print(f"speed ratio {theirs['wall'] / ours['wall']:.2f}x (goal >= 1.5x), "
          f"peak RSS ratio {ours['rss_mb'] / theirs['rss_mb']:.2f}x (goal <= 0.7x)")


if __name__ == "__main__":
    main()
