"""``tuillm train BASE --data FILE.jsonl -o ADAPTER_DIR``: LoRA fine-tuning; Ctrl-C finishes the step and saves."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tuillm.core.events import Emit, Event, Metric
from tuillm.core.train.options import TRAIN_OPTIONS, TrainConfig, parse_targets
from tuillm.tui.cli.options import add_options, option_values


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
    add_options(p, TRAIN_OPTIONS)  # every training option, declared once in core.train.options
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _emit(quiet: bool) -> Emit:
    from tuillm.tui.cli.progress import CliRenderer

    renderer = CliRenderer(quiet=quiet)

    def emit(event: Event) -> None:
        if not isinstance(event, Metric):  # the per-step Log line carries the metrics already
            renderer(event)

    return emit


def run(args: argparse.Namespace) -> int:
    from tuillm.core.events import Cancelled
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.train.data import load_dataset
    from tuillm.core.train.loop import train

    values = option_values(args, TRAIN_OPTIONS)  # a refused flag first: nothing is read before it
    for path in args.data:  # bad data is reported before the base model is even looked at
        load_dataset(path)
    values["targets"] = parse_targets(values["targets"])
    config = TrainConfig(base=str(resolve_model(args.base)), data=list(args.data),
                         output=str(Path(args.output).expanduser()), **values)
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
