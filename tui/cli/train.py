"""``tuillm train BASE --data FILE.jsonl -o ADAPTER_DIR``: LoRA fine-tuning; Ctrl-C finishes the step and saves.

SIGTERM and SIGHUP (a dropped SSH session) do what Ctrl-C does: once training has started, the step finishes and
a checkpoint is saved (exit 128 + the signal); before that, or on a second one, the run stops at once, its
temporaries removed.

``--nproc N`` starts N ranks (core.train.dist_launch) and shows rank 0's progress; Ctrl-C reaches this process,
which forwards it to every rank. ``torchrun --nproc-per-node N $(which tuillm) train …`` (or ``accelerate
launch``) runs this same command once per rank: each sees RANK/WORLD_SIZE, joins the group, and only rank 0 shows
progress and prints the adapter's folder; a signal reaches every rank, and they stop after the same step.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from tuillm.core.events import Emit, Event, Metric, Progress
from tuillm.core.train.options import TRAIN_OPTIONS, TrainConfig, parse_targets
from tuillm.tui.cli.options import add_options, option_values
from tuillm.tui.cli.signals import STOP_SIGNALS, Stopped, handled, ignore_stop_signals, leave_gone_terminal


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train a LoRA adapter on JSONL data",
        description="Train a LoRA adapter (PEFT format) on one or more JSONL files. Formats, detected per file: "
        "alpaca (instruction/input/output), chat messages (OpenAI `messages`, ShareGPT `conversations`), "
        "prompt/completion, raw text; with --method dpo, preference pairs (prompt/chosen/rejected, or chosen/rejected "
        "message lists). A GGUF base (or `demo`) is first dequantized into a cached HF folder. "
        "Ctrl-C finishes the current step and saves a checkpoint; --resume continues from it. --nproc N trains "
        "with N data-parallel processes (the same global batch); torchrun or accelerate launch of this command "
        "works too.")
    p.add_argument("base", metavar="BASE", help="base model: HF folder, GGUF, name from `tuillm models`, or demo")
    p.add_argument("--data", metavar="FILE.jsonl", required=True, action="append",
                   help="training data (repeat for several files)")
    p.add_argument("-o", "--output", metavar="ADAPTER_DIR", required=True, help="adapter folder to write")
    add_options(p, TRAIN_OPTIONS)  # every training option, declared once in core.train.options
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--force", action="store_true",
                   help="replace a finished adapter (or another run's checkpoints) in the output folder")
    return p


class _Stop:
    """The run's answer to Ctrl-C, SIGTERM and SIGHUP: while training, the first finishes the step and saves a
    checkpoint (``cancel``); before training starts (nothing to save) or the second time, it stops at once."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.training = False  # set by the first training step's progress
        self.signum = 0

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        leave_gone_terminal(signum)
        if self.cancel.is_set() or not self.training:
            if signum in STOP_SIGNALS:
                ignore_stop_signals()
                raise Stopped(signum)
            raise KeyboardInterrupt
        self.cancel.set()
        self.signum = signum
        try:
            print("\ntuillm: stopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr,
                  flush=True)
        except (OSError, ValueError):  # the terminal is gone: the checkpoint matters more than the line
            pass

    def emit(self, quiet: bool) -> Emit:
        from tuillm.tui.cli.progress import CliRenderer

        renderer = CliRenderer(quiet=quiet)

        def emit(event: Event) -> None:
            if isinstance(event, Progress) and event.stage == "train":
                self.training = True
            if not isinstance(event, Metric):  # the per-step Log line carries the metrics already
                renderer(event)

        return emit


def run(args: argparse.Namespace) -> int:
    from tuillm.core.events import Cancelled
    from tuillm.core.files import named_path
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.train.loop import train
    from tuillm.core.train.pairs import check_data

    values = option_values(args, TRAIN_OPTIONS)  # a refused flag first: nothing is read before it
    targets = parse_targets(values["targets"])  # a text that names no module was refused with its flag
    output = named_path(args.output, "output folder")  # "" would be the current folder
    # Bad data is reported before the base model is even looked at; what was read is handed to the run (one read).
    datasets = check_data(args.data, values["method"])
    config = TrainConfig(base=str(resolve_model(args.base)), data=list(args.data), output=str(output),
                         **{**values, "targets": targets})
    config.check()
    stop = _Stop()
    rank = launched_rank()
    # A rank of torchrun/accelerate launch: a signal asks for a cancel at once (only rank 0 sees the training
    # start), and every rank agrees to stop after the same step.
    stop.training = rank is not None
    try:
        with handled((signal.SIGINT, *STOP_SIGNALS), stop):
            result = train(config, emit=stop.emit(args.quiet or bool(rank)), cancel=stop.cancel, force=args.force,
                           datasets=datasets)
    except Cancelled:
        return 128 + (stop.signum or signal.SIGINT)
    finally:
        if stop.cancel.is_set():  # more Ctrl-C presses as the process exits (torch's atexit work) printed a
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # traceback and ended it by SIGINT, not with 130
    if not rank:
        print(result.output)
    return 0


def launched_rank() -> int | None:
    """This process's rank when a launcher (torchrun, accelerate launch) started several; None otherwise."""
    from tuillm.core.train.distributed import launched_world

    if launched_world() == 1:
        return None
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
