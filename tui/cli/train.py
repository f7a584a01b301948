"""``tuillm train BASE --data FILE.jsonl -o ADAPTER_DIR``: LoRA fine-tuning; Ctrl-C finishes the step and saves."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train a LoRA adapter on JSONL data",
        description="Train a LoRA adapter (PEFT format) on one or more JSONL files. Formats, detected per file: "
        "alpaca (instruction/input/output), chat messages (OpenAI `messages`, ShareGPT `conversations`), "
        "prompt/completion, raw text. A GGUF base (or `demo`) is first dequantized into a cached HF folder. "
        "Ctrl-C finishes the current step and saves a checkpoint; --resume continues from it.")
    p.add_argument("base", metavar="BASE", help="base model: HF folder, GGUF, name from `tuillm models`, or demo")
    p.add_argument("--data", metavar="FILE.jsonl", required=True, action="append",
                   help="training data (repeat for several files)")
    p.add_argument("-o", "--output", metavar="ADAPTER_DIR", required=True, help="adapter folder to write")
    lora = p.add_argument_group("LoRA")
    lora.add_argument("--rank", type=int, default=16, help="rank (default 16)")
    lora.add_argument("--alpha", type=float, default=32, help="alpha; the scale is alpha/rank (default 32)")
    lora.add_argument("--dropout", type=float, default=0.05, help="dropout (default 0.05)")
    lora.add_argument("--targets", default="default", metavar="NAMES",
                      help="comma-separated module names, `all-linear`, or `default` (attention and MLP projections)")
    data = p.add_argument_group("data")
    data.add_argument("--max-len", type=int, default=512, help="tokens per example; longer ones are cut (512)")
    data.add_argument("--train-on-prompt", action="store_true",
                      help="put loss on every token, not only the assistant's")
    data.add_argument("--eval-split", type=float, default=0.0, metavar="FRACTION",
                      help="fraction held out for eval loss (default 0)")
    data.add_argument("--eval-every", type=int, default=None, metavar="STEPS", help="eval loss every N steps")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=float, default=1, help="epochs (default 1)")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (overrides --epochs)")
    t.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch (default 4)")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    t.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    t.add_argument("--schedule", choices=("cosine", "linear", "constant"), default="cosine")
    t.add_argument("--warmup", type=float, default=0.03,
                   help="warmup: a fraction of the steps if < 1, else a step count (default 0.03)")
    t.add_argument("--grad-checkpointing", action="store_true", help="trade compute for memory")
    t.add_argument("--packing", choices=("auto", "row", "each"), default="auto",
                   help="no padding either way: `row` packs a micro-batch in one sequence (block-diagonal "
                   "attention), `each` runs its examples one by one; auto: each on CPU/MPS, row on CUDA")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=100, metavar="STEPS",
                   help="checkpoint every N steps (default 100; 0: only when interrupted)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in ADAPTER_DIR")
    t.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    t.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--log-every", type=int, default=1, metavar="STEPS", help="print a line every N steps (1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _emit(quiet: bool) -> Any:
    from tuillm.core.events import Metric
    from tuillm.tui.cli.progress import CliRenderer

    renderer = CliRenderer(quiet=quiet)

    def emit(event: Any) -> None:
        if not isinstance(event, Metric):  # the per-step Log line carries the metrics already
            renderer(event)

    return emit


def run(args: argparse.Namespace) -> int:
    from tuillm.core.events import Cancelled
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.train.data import load_dataset
    from tuillm.core.train.loop import TrainConfig, parse_targets, train

    for path in args.data:  # bad data is reported before the base model is even looked at
        load_dataset(path)
    targets = parse_targets(args.targets)
    config = TrainConfig(
        base=str(resolve_model(args.base)), data=list(args.data), output=str(Path(args.output).expanduser()),
        rank=args.rank, alpha=args.alpha, dropout=args.dropout, targets=targets, max_len=args.max_len,
        batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, schedule=args.schedule,
        warmup=args.warmup, epochs=args.epochs, max_steps=args.max_steps, eval_fraction=args.eval_split,
        eval_every=args.eval_every, save_every=args.save_every, grad_checkpointing=args.grad_checkpointing,
        assistant_only=not args.train_on_prompt, seed=args.seed, device=args.device, dtype=args.dtype,
        resume=args.resume, log_every=args.log_every, packing=args.packing)
    config.check()
    cancel = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ntuillm: stopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr,
              flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        result = train(config, emit=_emit(args.quiet), cancel=cancel)
    except Cancelled:
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(result.output)
    return 0
