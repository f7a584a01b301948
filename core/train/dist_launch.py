"""``--nproc N``: N ranks of the training job started as processes on this machine, and watched.

Each rank is ``python -m tuillm.core.train.dist_worker`` with the environment torchrun would give it (RANK,
WORLD_SIZE, MASTER_ADDR/PORT on loopback, OMP threads shared out), in a session of its own: the terminal's Ctrl-C
reaches this process only, which forwards a cancel to every rank (rank 0 then saves the checkpoint, as a
one-process run does). Rank 0 writes its events, and the run's end, as JSON lines into a pipe; they are emitted
here, so a front end sees one stream. The ranks' own output goes to files in a temporary folder: removed when the
run ends, kept (and named in the error) when a rank failed, for its whole traceback.

When a rank dies, the others are given ``GRACE_S`` to notice (rank 0 saves the last whole step), then killed; the
run ends with one ``TuillmError`` naming the rank, how it ended and the checkpoint to resume from.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuillm.convert.child import usable_cpus
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Event, Log, Metric, Progress, ignore
from tuillm.core.paths import expand_user
from tuillm.core.text import safe_line
from tuillm.core.train.checkpoints import TrainResult, latest_checkpoint
from tuillm.core.train.distributed import check_nproc
from tuillm.core.train.options import TrainConfig

EVENTS_FD = "TUILLM_EVENTS_FD"  # the pipe rank 0 writes its events to (set by the launcher only)
GRACE_S = 30.0  # after a rank died: time for the others to fail their collective and rank 0 to save
_EVENT_TYPES: dict[str, type[Progress] | type[Log] | type[Metric]] = {
    "Progress": Progress, "Log": Log, "Metric": Metric}


def encode(kind: str, payload: dict[str, Any]) -> bytes:
    """One line of the rank-0 pipe: ``{"kind": ..., **payload}``."""
    return (json.dumps({"kind": kind, **payload}) + "\n").encode()


def encode_event(event: Event) -> bytes:
    return encode("event", {"type": type(event).__name__, "fields": asdict(event)})


def decode_event(record: dict[str, Any]) -> Event | None:
    """An event back from its line; None for one that does not decode (a rank is our own code, but a line cut
    short by a kill must not end the launcher)."""
    kind = _EVENT_TYPES.get(str(record.get("type")))
    fields = record.get("fields")
    if kind is None or not isinstance(fields, dict):
        return None
    try:
        return kind(**fields)
    except TypeError:
        return None


def result_payload(result: TrainResult) -> dict[str, Any]:
    return {**asdict(result), "output": str(result.output)}


def _result(payload: dict[str, Any]) -> TrainResult:
    fields = {k: payload[k] for k in ("steps", "train_loss", "eval_loss", "tokens", "seconds", "loss_log")}
    return TrainResult(Path(payload["output"]), **fields)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Outcome:
    """What rank 0 said at its end, and how each rank ended."""

    result: TrainResult | None = None
    error: str | None = None
    cancelled: bool = False
    peer_lost: bool = False  # rank 0's error is that another rank had gone
    codes: dict[int, int] = field(default_factory=dict)
    first_failure: float | None = None  # when a rank first ended badly (monotonic)
    first_failed: list[int] = field(default_factory=list)  # the ranks seen ending badly at that moment


def ranks_env(nproc: int) -> dict[str, str]:
    """The environment every rank shares: where rank 0 listens, the world's size, and, unless the user set it, the
    usable CPUs (a container's cpuset, not the host's) shared out among the ranks, as torchrun and accelerate do."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(nproc),
               LOCAL_WORLD_SIZE=str(nproc), PYTHONUNBUFFERED="1")
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // nproc))
    return env


class _Ranks:
    """The started ranks, their output files and rank 0's pipe."""

    def __init__(self, config: TrainConfig, force: bool, logs: Path) -> None:
        read, write = os.pipe()
        self.pipe = read
        self.buffer = b""
        self.logs = logs
        payload = json.dumps({"config": asdict(config), "force": force})
        env = ranks_env(config.nproc)
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for rank in range(config.nproc):
                rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
                if rank == 0:
                    rank_env[EVENTS_FD] = str(write)
                with open(logs / f"rank-{rank}.log", "wb") as out:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-m", "tuillm.core.train.dist_worker", payload], env=rank_env,
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        pass_fds=(write,) if rank == 0 else (), start_new_session=True))
        except BaseException:
            self.kill()
            os.close(read)
            raise
        finally:
            os.close(write)

    def read(self, timeout: float) -> list[dict[str, Any]] | None:
        """Rank 0's lines that arrived within ``timeout``; None once its end of the pipe closed."""
        ready, _, _ = select.select([self.pipe], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(self.pipe, 1 << 16)
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def signal(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signum)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()

    def last_line(self, rank: int) -> str:
        """The last line a failed rank wrote (its error, or a traceback's last line)."""
        try:
            text = (self.logs / f"rank-{rank}.log").read_text(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith(" ")]
        return safe_line(lines[-1]) if lines else ""


def _take(record: dict[str, Any], outcome: _Outcome, emit: Emit) -> None:
    kind = record.get("kind")
    if kind == "event":
        event = decode_event(record)
        if event is not None:
            emit(event)
    elif kind == "result" and isinstance(record.get("result"), dict):
        outcome.result = _result(record["result"])
    elif kind == "error":
        outcome.error = safe_line(str(record.get("message", "")))
        outcome.peer_lost = record.get("peer_lost") is True
    elif kind == "cancelled":
        outcome.cancelled = True


def _watch(ranks: _Ranks, emit: Emit, cancel: threading.Event | None) -> _Outcome:
    """Rank 0's events emitted, a cancel forwarded, the ranks waited for (a dead rank: the others killed after
    ``GRACE_S``)."""
    outcome = _Outcome()
    forwarded = False
    open_pipe = True
    while open_pipe or len(outcome.codes) < len(ranks.procs):
        if open_pipe:
            records = ranks.read(0.2)
            if records is None:
                open_pipe = False
            for record in records or ():
                _take(record, outcome, emit)
        else:
            time.sleep(0.2)
        if cancel is not None and cancel.is_set() and not forwarded:
            ranks.signal(signal.SIGINT)  # every rank finishes the step; they agree to stop after the same one
            forwarded = True
        for rank, proc in enumerate(ranks.procs):
            if rank not in outcome.codes and (code := proc.poll()) is not None:
                outcome.codes[rank] = code
        if outcome.first_failure is None and (failed := [r for r, c in outcome.codes.items() if c != 0]):
            outcome.first_failure, outcome.first_failed = time.monotonic(), failed
        if outcome.first_failure is not None and time.monotonic() - outcome.first_failure > GRACE_S:
            ranks.kill()
    return outcome


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _failure(outcome: _Outcome, ranks: _Ranks, out: Path) -> TuillmError:
    """One line: the rank that ended first on its own and how, what rank 0 said, the checkpoint to resume from."""
    first = sorted(outcome.first_failed)
    # Among the first seen to end, one killed by a signal is the cause (the others failed because it had gone).
    culprit = next((r for r in first if outcome.codes[r] < 0), first[0] if first else 0)
    parts = []
    if culprit != 0 or outcome.error is None:
        code = outcome.codes.get(culprit, 1)
        said = ranks.last_line(culprit) if code > 0 else ""
        parts.append(f"training rank {culprit} {_how(code)}" + (f" ({said})" if said else ""))
    if outcome.error is not None:
        parts.append(f"rank 0: {outcome.error}" if parts else outcome.error)
    text = "; ".join(parts)
    if "checkpoint" not in text:
        latest = latest_checkpoint(out)
        text += (f"; the checkpoint {latest} is kept (--resume continues it)" if latest is not None
                 else "; no checkpoint was saved")
    return TuillmError(f"{text}; each rank's output (a traceback, if one failed) is kept in {ranks.logs}")


def launch(config: TrainConfig, *, emit: Emit = ignore, cancel: threading.Event | None = None,
           force: bool = False) -> TrainResult:
    """Train with ``config.nproc`` processes; returns rank 0's result (see the module docstring). A second
    interrupt while waiting (KeyboardInterrupt, a front end's stop) kills the ranks at once."""
    from tuillm.core.train.base import base_folder, pick_device

    check_nproc(config, pick_device(config.device), 1)
    # A GGUF base is dequantized here, once, before any rank starts: the ranks find the cached folder (no rank
    # waits in a collective, with its timeout, while another converts a large model).
    base_folder(Path(config.base), emit=emit)
    emit(Log(f"starting {config.nproc} training processes (data-parallel through accelerate); "
             "rank 0 reports"))
    logs = Path(tempfile.mkdtemp(prefix="tuillm-ranks-"))
    keep = False  # a rank failed: its whole output stays for the user to read, as torchrun's log dir does
    try:
        ranks = _Ranks(config, force, logs)
        try:
            outcome = _watch(ranks, emit, cancel)
        finally:
            ranks.kill()
            os.close(ranks.pipe)
        if outcome.result is not None and all(code == 0 for code in outcome.codes.values()):
            return outcome.result
        if outcome.cancelled:
            raise Cancelled()
        if outcome.error is not None and not outcome.peer_lost:
            raise TuillmError(outcome.error)  # rank 0 stopped the run (bad data, memory, a full disk)
        keep = True
        raise _failure(outcome, ranks, expand_user(config.output))
    finally:
        if not keep:
            shutil.rmtree(logs, ignore_errors=True)
