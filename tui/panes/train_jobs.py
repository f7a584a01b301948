"""The Train pane's long jobs, started on ``tui.jobs.run_job``, and the typed message each one's success posts.

Training, merging, exporting the adapter and converting the base (for A/B) are the core's functions; here they
are bound to their arguments. Progress, cancel and failure arrive as ``tui.jobs``' own messages. None of this
imports torch: the core does, inside.
"""

from __future__ import annotations

import threading
from pathlib import Path

from textual.message import Message
from textual.widget import Widget

from tuillm.core.events import Emit, Log
from tuillm.core.settings import Config
from tuillm.core.train.checkpoints import TrainResult
from tuillm.core.train.options import TrainConfig
from tuillm.tui.jobs import run_job

TRAIN, MERGE, EXPORT, CONVERT = "train", "merge", "export", "convert"  # job names (tui.jobs' worker groups)
# A job as the questions name it, with its article: "Stop the conversion?", "This stops an export".
NOUNS = {TRAIN: ("", "training"), MERGE: ("a", "merge"), EXPORT: ("an", "export"), CONVERT: ("a", "conversion")}


class Trained(Message):
    """The run finished: the adapter is in ``result.output``; ``config.base`` is the resolved base."""

    def __init__(self, config: TrainConfig, result: TrainResult) -> None:
        super().__init__()
        self.config = config
        self.result = result


class Merged(Message):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path  # the merged GGUF


class Exported(Message):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path  # the adapter as a GGUF LoRA


class BaseConverted(Message):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path  # the HF base as a GGUF, for A/B


def start_train(owner: Widget, config: TrainConfig, settings: Config, cancel: threading.Event, *,
                force: bool = False) -> None:
    """Checks the data, resolves the base (a name, demo) and trains; ``config.base`` becomes the resolved path.
    ``force`` (the user was asked): a finished adapter or another run's checkpoints in the output are replaced."""

    def job(emit: Emit) -> TrainResult:
        from tuillm.core.models.catalog import resolve_model
        from tuillm.core.train.loop import train
        from tuillm.core.train.pairs import check_data

        # Bad data is reported before the base model is even looked at; a stop (Esc, a quit) ends the reading. What
        # was read is handed to the run (which empties the list): each file is read once.
        datasets = check_data(config.data, config.method, cancel)
        config.base = str(resolve_model(config.base, settings))
        emit(Log(f"base {config.base}; adapter to {config.output}"))
        return train(config, emit=emit, cancel=cancel, force=force, datasets=datasets)

    run_job(owner, TRAIN, job, lambda result: Trained(config, result))


def start_merge(owner: Widget, base: Path, adapter: Path, out: Path, out_type: str,
                cancel: threading.Event, *, force: bool = False) -> None:
    def job(emit: Emit) -> Path:
        from tuillm.core.train.merge import merge

        return merge(base, adapter, out, out_type, emit=emit, cancel=cancel, force=force)

    run_job(owner, MERGE, job, Merged)


def start_export(owner: Widget, adapter: Path, base: Path, out: Path, cancel: threading.Event, *,
                 force: bool = False) -> None:
    def job(emit: Emit) -> Path:
        from tuillm.core.train.merge import export_lora

        return export_lora(adapter, base, out, emit=emit, cancel=cancel, force=force)

    run_job(owner, EXPORT, job, Exported)


def start_convert(owner: Widget, base: Path, out: Path, out_type: str, cancel: threading.Event) -> None:
    def job(emit: Emit) -> Path:
        from tuillm.core.conversion.job import convert_checkpoint

        return convert_checkpoint(base, out, out_type, emit=emit, cancel=cancel)

    run_job(owner, CONVERT, job, BaseConverted)
