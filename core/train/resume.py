"""What a resumed run checks before it goes on from a checkpoint: the same data, and steps left to train.

Every checkpoint records its run's data files (``data_record``: each file's path, size and SHA-256) in its
state.json; a run takes the digests in the one read of each file that also checks and keeps its records
(``datasets_record``; core.train.prepare.read_data). A resume over other data (a file edited, another file, the
files in another order) would replay another run's order from the checkpoint's weights without a word: it is
refused, naming what differs, before anything loads. A checkpoint already at the run's last step (``--max-steps`` at
or below its step, or fewer epochs) would write it out as the adapter with its own step count: refused too. The
settings' fingerprint is compared here as well, before the data, so other settings are named before the base loads;
core.train.checkpoints.load_checkpoint checks it again with the rest of state.json, and the base's architecture, as
the checkpoint loads.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuillm.core.errors import TuillmError
from tuillm.core.events import Log
from tuillm.core.text import shown
from tuillm.core.train.checkpoints import check_fingerprint, load_checkpoint, valid_data_record
from tuillm.core.train.jsonl import FileDigest, file_digest
from tuillm.core.train.options import TrainConfig

if TYPE_CHECKING:
    from tuillm.core.train.data import Dataset
    from tuillm.core.train.loop import TrainRun
    from tuillm.core.train.pairs import PairDataset

DATA_KEY = "data"  # state.json's record of the run's data files


def file_record(digest: FileDigest) -> dict[str, Any]:
    """A data file's resolved path, size and SHA-256: what a checkpoint records of it. The contents decide (a file
    moved or renamed is the same data); the path and size only name what differs."""
    return {"path": str(digest.path.resolve()), "size": digest.size, "sha256": digest.sha256}


def data_record(paths: Sequence[str], cancel: threading.Event | None = None) -> list[dict[str, Any]]:
    """Each data file's ``file_record``, in order: what a checkpoint records of its data (the files read for it)."""
    return [file_record(file_digest(name, cancel)) for name in paths]


def datasets_record(datasets: Sequence[Dataset | PairDataset],
                    cancel: threading.Event | None = None) -> list[dict[str, Any]]:
    """``data_record`` of data files already read, from the digests taken of the bytes their records were read from
    (a dataset made without one is read for it)."""
    return [file_record(d.digest or file_digest(d.path, cancel)) for d in datasets]


def _read_state(path: Path) -> dict[str, Any] | None:
    """A checkpoint's state.json, or None when it cannot be read (load_checkpoint then reports it as damaged)."""
    try:
        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, MemoryError):
        return None
    return meta if isinstance(meta, dict) else None


def data_difference(saved: list[dict[str, Any]], now: list[dict[str, Any]]) -> str | None:
    """How this run's data differs from a checkpoint's, in a few words, or None when it is the same."""
    if [f["sha256"] for f in saved] == [f["sha256"] for f in now]:
        return None
    if len(saved) != len(now):
        return (f"it was trained on {len(saved)} data file{'s' if len(saved) != 1 else ''}, and this run has "
                f"{len(now)}")
    old, new = next((a, b) for a, b in zip(saved, now, strict=True) if a["sha256"] != b["sha256"])
    if sorted(f["sha256"] for f in saved) == sorted(f["sha256"] for f in now):
        return "the same data files in another order"
    if old["path"] == new["path"]:
        sizes = (f"{old['size']} bytes then, {new['size']} now" if old["size"] != new["size"]
                 else "the same size, other contents")
        return f"{shown(new['path'], 200)} has changed since ({sizes})"
    return f"it was trained on {shown(old['path'], 200)}, not {shown(new['path'], 200)}"


def checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint folder is named for (load_checkpoint checks its state.json says the same)."""
    named = re.fullmatch(r"step-(\d+)", path.name)
    return int(named.group(1)) if named else None


def check_resume(path: Path, config: TrainConfig, data: list[dict[str, Any]]) -> None:
    """Refuses, in one line, a resume from ``path`` with ``--max-steps`` at or below its step, with other settings,
    or over other data than it was trained on; checked before anything loads (what cannot be read is left to
    ``load_checkpoint``, which names the checkpoint damaged)."""
    step = checkpoint_step(path)
    if step is not None and config.max_steps is not None and step >= config.max_steps:
        raise TuillmError(f"{path}: the checkpoint is at step {step} and --max-steps is {config.max_steps}: no step "
                          f"is left to train; raise --max-steps above {step}, or use another output folder")
    meta = _read_state(path)
    if meta is None:
        return
    if isinstance(meta.get("fingerprint", {}), dict):
        check_fingerprint(path, meta, config)
    saved = meta.get(DATA_KEY)
    if saved is None or not valid_data_record(saved):
        # A checkpoint of an older version records no data: resumed unchecked, as before. A record edited into
        # something else is refused as damaged where the checkpoint loads (load_checkpoint).
        return
    problem = data_difference(saved, data)
    if problem is not None:
        raise TuillmError(f"{path}: the checkpoint was trained on other data ({problem}); resume with the same data, "
                          "or use another output folder")


def check_steps_left(path: Path, config: TrainConfig, total_steps: int) -> None:
    """Refuses a resume from ``path`` whose step is already the last of a run of ``total_steps`` by its epochs
    (``--max-steps`` was checked by ``check_resume``)."""
    step = checkpoint_step(path)
    if step is not None and config.max_steps is None and step >= total_steps:
        raise TuillmError(f"{path}: the checkpoint is at step {step} and --epochs {config.epochs:g} makes "
                          f"{total_steps} step{'s' if total_steps != 1 else ''}: no step is left to train; raise "
                          "--epochs or --max-steps, or use another output folder")


def restore(run: TrainRun, resume_from: Path | None) -> None:
    """The run set to where the checkpoint ``resume_from`` left it (step, loss log, tokens), or told there is none."""
    config = run.config
    if resume_from is not None:
        meta = load_checkpoint(resume_from, run.model, run.optimizer, config)
        run.step, run.log = int(meta["step"]), list(meta["loss_log"])
        run.tokens_done = int(meta.get("tokens", 0))
        run.emit(Log(f"resuming from {resume_from.name} (step {run.step} of {run.plan.total_steps})"))
    elif config.resume:
        run.emit(Log(f"{run.out}: no checkpoint to resume from; starting at step 0", "warning"))
