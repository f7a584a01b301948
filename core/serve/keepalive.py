"""How long a loaded model stays: the last request's ``keep_alive`` (Ollama's: each request sets it; 0 unloads the
model once the work queued on it is done, inf keeps it), else the server's ``idle_unload`` (0: for ever), counted
from the end of its last use and never while work uses it. The chat model (``ModelHost``) and the embedding context
(``Embedder``) each keep one."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable

IDLE_CHECK_S = 1.0  # how often an idle model's time is checked (at most)
MIN_CHECK_S = 0.05  # at least (keep_alive 0: the model goes within a second of its last reply)


class KeepAlive:
    """A loaded model's use count and idle time; ``idle_unload`` is read at each check (the server's setting)."""

    def __init__(self, idle_unload: Callable[[], float]) -> None:
        self._idle_unload = idle_unload
        self.keep: float | None = None  # seconds, from the last request's keep_alive; None: idle_unload
        self.active = 0  # work queued or running on the model
        self._lock = threading.Lock()  # the count changes on the event loop and on a worker thread
        self._last_used = time.monotonic()

    def begin(self) -> None:
        with self._lock:
            self.active += 1

    def end(self) -> None:
        with self._lock:
            self.active -= 1
            self._last_used = time.monotonic()

    def touch(self) -> None:
        """A model just loaded is not idle since the last use of the one before."""
        self._last_used = time.monotonic()

    def keep_s(self) -> float:
        """How long the model stays after its last use (inf: until the server ends)."""
        if self.keep is not None:
            return self.keep
        idle = self._idle_unload()
        return idle if idle > 0 else math.inf

    def expires_in(self) -> float:
        """Seconds until the model is unloaded (inf: kept), counted from its last use."""
        if self.active:
            return self.keep_s()
        return max(self.keep_s() - (time.monotonic() - self._last_used), 0.0)

    def due(self) -> bool:
        return self.active == 0 and self.expires_in() <= 0

    async def unload_when_idle(self, loaded: Callable[[], bool], lock: asyncio.Lock,
                               unload: Callable[[], Awaitable[None]]) -> None:
        """Runs for the server's life: ``unload()`` once the model is idle for ``keep_s()`` seconds, checked again
        under ``lock`` (a request may have come meanwhile, and is served in turn)."""
        while True:
            keep = self.keep_s()
            await asyncio.sleep(IDLE_CHECK_S if math.isinf(keep) else min(max(keep / 4, MIN_CHECK_S), IDLE_CHECK_S))
            if loaded() and self.due():
                async with lock:
                    if loaded() and self.due():
                        await unload()
