"""One rank of a ``--nproc N`` run: ``python -m tuillm.core.train.dist_worker '{"config": ..., "force": ...}'``.

Started by core.train.dist_launch with torchrun's environment; it runs ``core.train.loop.train``, which joins the
process group through accelerate. Rank 0 writes its events and its end (result, error, cancelled) as JSON lines to
the launcher's pipe. SIGINT/SIGTERM, or the launcher going away, ask for a cancel: the ranks agree to stop after
the same step and rank 0 saves a checkpoint. (``torchrun``/``accelerate launch`` start ``tuillm train`` itself
instead: the same loop, with rank 0's events on its own terminal.)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import FrameType

from tuillm.core.errors import TuillmError, first_line
from tuillm.core.events import Cancelled, Event
from tuillm.core.train.dist_launch import EVENTS_FD, encode, encode_event, result_payload
from tuillm.core.train.distributed import PeerLost
from tuillm.core.train.options import TrainConfig


class _Pipe:
    """Rank 0's line to the launcher; writing to a launcher that went away asks for a cancel."""

    def __init__(self, fd: int | None, cancel: threading.Event) -> None:
        self.fd, self.cancel = fd, cancel

    def write(self, data: bytes) -> None:
        if self.fd is None:
            return
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:  # the launcher is gone: stop after this step, with a checkpoint
            self.fd = None
            self.cancel.set()

    def emit(self, event: Event) -> None:
        self.write(encode_event(event))


def _watch_parent(cancel: threading.Event) -> None:
    """A cancel when the launcher dies (this rank is then adopted): no rank trains on with nobody listening."""
    parent = os.getppid()
    while not cancel.wait(1.0):
        if os.getppid() != parent:
            cancel.set()


def main(argv: list[str]) -> int:
    from tuillm.core.train.loop import train

    payload = json.loads(argv[0])
    config = TrainConfig(**payload["config"])
    cancel = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        cancel.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    threading.Thread(target=_watch_parent, args=(cancel,), daemon=True).start()
    fd = os.environ.get(EVENTS_FD)
    pipe = _Pipe(int(fd) if fd else None, cancel)
    try:
        result = train(config, emit=pipe.emit, cancel=cancel, force=bool(payload.get("force")))
    except Cancelled:
        pipe.write(encode("cancelled", {}))
        return 130
    except TuillmError as exc:
        pipe.write(encode("error", {"message": str(exc), "peer_lost": isinstance(exc, PeerLost)}))
        print(f"tuillm: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: the traceback goes to this rank's log, one line to the launcher
        pipe.write(encode("error", {"message": f"{type(exc).__name__}: {first_line(exc)}"}))
        raise
    pipe.write(encode("result", {"result": result_payload(result)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
