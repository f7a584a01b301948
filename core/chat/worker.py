"""A chat session's worker: one thread at a time runs its jobs in order, and it ends when no job is waiting.

llama-cpp-python's build runs llama.cpp's threads through OpenMP (libgomp). Each Python thread that decodes gets
a team of OpenMP threads of its own, kept as long as that thread lives, and once the teams of a process hold more
threads than there are CPUs, libgomp cuts its threads' spin-waiting short: every decode in the process then runs
at about a third of its speed (on 2 cores: 100 tok/s for one session; 33 for each, in turn, once a second session
had decoded on a thread that was still alive). A session's thread that ends once its work is done takes its team
with it, so sessions used in turn (the A/B view's sides, the models a server swaps between, the chat and the
server of one app) each decode at full speed; only work that really overlaps shares the cores.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

# The decode thread takes the GIL back after each token's decode. While another thread runs Python (the app drawing
# a frame) it waited up to the default 5 ms switch interval, llama.cpp's threads idle meanwhile; 0.5 ms bounds that
# wait. Measured in tests/bench/chat.py's paired rounds: +1-3% decode speed in the app. (In `tuillm serve`, whose
# event loop does little per token, no difference showed beyond the bench's noise.)
GIL_SWITCH_S = 0.0005


def favour_decoding() -> None:
    """Lowers the process's GIL switch interval for a front end whose event loop runs Python (draws) while a reply
    decodes."""
    sys.setswitchinterval(GIL_SWITCH_S)


class Worker:
    """Like ``ThreadPoolExecutor(max_workers=1)``, but its thread is started for queued jobs and ends when the
    queue is empty (the next ``submit`` starts another)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._thread: threading.Thread | None = None
        self._shut = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.append((future, lambda: fn(*args, **kwargs)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None  # under the lock: a submit from now on starts a new thread
                    return
                future, job = self._jobs.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:  # noqa: BLE001 - the caller gets it from the future, as from an executor
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True) -> None:
        """No new jobs; with ``wait``, until the queued ones have run."""
        with self._lock:
            self._shut = True
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()
