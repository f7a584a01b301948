"""Benchmark: ``tuillm train`` vs a plain transformers Trainer + peft script, and against the machine's ceiling.

Same model (the demo, as an HF checkpoint), same data (chat examples of mixed lengths), same LoRA rank and
targets, batch size, max length and epochs. The baseline (float32, as a typical script on CPU) uses dynamic
padding with transformers' default causal LM collator. tuillm runs with ``--dtype auto`` (bf16 on a CPU with
AVX-512 BF16 or AMX) unless ``--dtype`` says otherwise. Each run is a fresh process; the two are interleaved
``--runs`` times and medians are printed.

In the same run the machine's matmul rate is measured (a 2048x2048 float32 and bf16 matmul, timed several times,
median, in a fresh process with the threads training uses): a LoRA step over a frozen base costs about
4 x params FLOP per token (forward 2, backward through the activations 2; the frozen weights need no gradient),
so the ceiling of a dtype is GFLOP/s / (4 x params) tokens/s. Printed: tuillm's steady-state tokens/s (after the
warm-up steps, the loop's own ``tokens_per_s``) as a fraction of the ceiling of the dtype it used, its set-up
time, and the whole-run ratios to the baseline (tokens of the data / wall time, model load included; peak RSS).
Goals on a CPU with AVX-512 BF16: >= 3x the baseline's tokens/s, steady state >= 50% of the bf16 ceiling, peak
RSS <= 0.6x the baseline's.

``--device cuda`` (a GPU machine, never CI): both train on the GPU, the baseline with ``bf16=True`` as a GPU
script would (where the GPU has bf16); the matmul is 8192x8192 and the peak GPU memory (torch's high-water mark of
allocated bytes) is compared as well.

Run: .venv/bin/python tests/bench/train.py [--examples 64] [--epochs 1] [--runs 3] [--dtype auto] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import PEAK_RSS, run_child  # noqa: E402

RANK, ALPHA, BATCH, MAX_LEN, LR = 16, 32, 4, 256, 2e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The loop called as ``tuillm train`` calls it, so its own metrics (steady tokens/s, set-up) can be read.
TUILLM = PEAK_RSS + """
import json, sys, time
t = time.perf_counter()
from tuillm.core.events import Log, Metric
from tuillm.core.train.loop import TrainConfig, train
base, data, out, epochs = sys.argv[1:5]
s = json.loads(sys.argv[5])
metrics, dtype = {}, ""
def emit(event):
    global dtype
    if isinstance(event, Metric):
        metrics[event.name] = event.value
    elif isinstance(event, Log) and event.message.startswith("LoRA rank"):
        dtype = event.message.rsplit(", ", 1)[-1]
train(TrainConfig(base=base, data=[data], output=out, rank=s["rank"], alpha=s["alpha"], batch_size=s["batch"],
                  max_len=s["max_len"], lr=s["lr"], epochs=float(epochs), dropout=s["dropout"], device=s["device"],
                  targets=s["targets"], dtype=s["dtype"]), emit=emit)
print(json.dumps({"wall": time.perf_counter() - t, "rss_mb": peak_rss_mb(), "steady": metrics["tokens_per_s"],
                  "setup": metrics["setup_s"], "dtype": dtype, "gpu_mb": peak_gpu_mb(s["device"])}))
"""

# The machine's matmul rate in each dtype, with torch's default threads (what the training uses); on a GPU a
# product large enough to keep it busy, timed to its end (synchronize).
MATMUL = """
import json, statistics, sys, time, torch
device = sys.argv[1]
n, out = (8192 if device == "cuda" else 2048), {}
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    sync()
    times = []
    for _ in range(7):
        t = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t)
    out[name] = 2 * n**3 / statistics.median(times) / 1e9
print(json.dumps(out))
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
tok.pad_token = tok.pad_token or tok.eos_token  # the collator pads; as usual scripts do
rows = [json.loads(l) for l in open(data)]
feats = [{"input_ids": tok.apply_chat_template(r["messages"], tokenize=True,
                                               return_dict=True)["input_ids"][:s["max_len"]]} for r in rows]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
gpu = s["device"] == "cuda"
lora = LoraConfig(r=s["rank"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules=s["targets"],
                  task_type="CAUSAL_LM")
model = get_peft_model(model, lora)
args = TrainingArguments(output_dir=out, per_device_train_batch_size=s["batch"], num_train_epochs=float(epochs),
                         learning_rate=s["lr"], lr_scheduler_type="cosine", warmup_steps=0.03, save_strategy="no",
                         report_to=[], logging_steps=10, use_cpu=not gpu, disable_tqdm=True, seed=0,
                         bf16=gpu and torch.cuda.is_bf16_supported())
Trainer(model=model, args=args, train_dataset=feats,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False)).train()
model.save_pretrained(out)
print(json.dumps({"wall": time.perf_counter() - t, "rss_mb": peak_rss_mb(), "gpu_mb": peak_gpu_mb(s["device"])}))
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


def settings(dtype: str, dropout: float, device: str) -> str:
    return json.dumps({"rank": RANK, "alpha": ALPHA, "batch": BATCH, "max_len": MAX_LEN, "lr": LR,
                       "targets": TARGETS, "dtype": dtype, "dropout": dropout, "device": device})


def main() -> None:
    from tuillm.core.train.options import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each (medians)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"), help="tuillm's")
    parser.add_argument("--dropout", type=float, default=TrainConfig.dropout,
                        help="LoRA dropout of both (default: tuillm's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where both train")
    opts = parser.parse_args()

    from tests.checkpoints import demo_hf_checkpoint
    from tuillm.core.train.memory import model_shape

    base = demo_hf_checkpoint()
    params = model_shape(base).params
    ours: list[dict] = []
    theirs: list[dict] = []
    rates: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(data, opts.examples)
        tokens = count_tokens(base, data) * opts.epochs
        print(f"demo model ({params / 1e6:.0f}M), {opts.examples} examples ({tokens:.0f} tokens x {opts.epochs:g} "
              f"epochs), rank {RANK}, LoRA dropout {opts.dropout:g}, batch {BATCH}, max length {MAX_LEN}, "
              f"{opts.device}, {opts.runs} interleaved runs")
        for i in range(opts.runs):
            rates.append(run_child(MATMUL, opts.device))
            epochs = str(opts.epochs)
            ours.append(run_child(TUILLM, str(base), str(data), f"{tmp}/ours{i}", epochs,
                                  settings(opts.dtype, opts.dropout, opts.device)))
            theirs.append(run_child(BASELINE, str(base), str(data), f"{tmp}/theirs{i}", epochs,
                                    settings("float32", opts.dropout, opts.device)))
            print(f"run {i + 1}: matmul {rates[-1]}, tuillm {ours[-1]}, Trainer {theirs[-1]}", flush=True)
    report(tokens, params, ours, theirs, rates, opts.device)


def report(tokens: float, params: int, ours: list[dict], theirs: list[dict], rates: list[dict], device: str) -> None:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    dtype = ours[0]["dtype"]
    gflops = {name: med(rates, name) for name in ("float32", "bfloat16")}
    ceiling = {name: rate * 1e9 / (4 * params) for name, rate in gflops.items()}
    n = 8192 if device == "cuda" else 2048
    print(f"matmul {n}x{n}: float32 {gflops['float32']:.0f} GFLOP/s, bf16 {gflops['bfloat16']:.0f} GFLOP/s -> "
          f"ceiling {ceiling['float32']:.0f} / {ceiling['bfloat16']:.0f} tokens/s (4 x {params / 1e6:.0f}M FLOP "
          "a token)")
    for name, rows in (("tuillm train", ours), ("Trainer + peft", theirs)):
        print(f"{name:16} {med(rows, 'wall'):7.1f} s  {tokens / med(rows, 'wall'):8.1f} tokens/s over the run  "
              f"peak RSS {med(rows, 'rss_mb'):7.0f} MB")
    steady = med(ours, "steady")
    share = steady / ceiling.get(dtype, ceiling["float32"])
    print(f"tuillm steady state ({dtype}): {steady:.0f} tokens/s = {share:.0%} of the {dtype} ceiling "
          f"(goal >= 50% of bf16's), set-up {med(ours, 'setup'):.1f} s")
    print(f"speed ratio {med(theirs, 'wall') / med(ours, 'wall'):.2f}x (goal >= 3x), "
          f"peak RSS ratio {med(ours, 'rss_mb') / med(theirs, 'rss_mb'):.2f}x (goal <= 0.6x)")
    if device == "cuda":
        print(f"peak GPU memory: tuillm {med(ours, 'gpu_mb'):.0f} MB, Trainer {med(theirs, 'gpu_mb'):.0f} MB, "
              f"ratio {med(ours, 'gpu_mb') / med(theirs, 'gpu_mb'):.2f}x")


if __name__ == "__main__":
    main()
