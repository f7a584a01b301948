"""uvicorn's HTTP/1.1 protocol (h11) with a time limit on a request's head.

uvicorn closes a connection that sends nothing for ``timeout_keep_alive`` seconds after a response, and h11 bounds
a head's size; but a fresh connection that sends nothing, or a head sent a byte at a time, held its connection for
ever. Here a connection that has not sent a whole head within the read timeout of its start (or of the end of its
last response) is closed. Without the head there is no path to tell the API's error shape by, so nothing is
answered (uvicorn's keep-alive timeout answers nothing either). The body's time is the guard's (``Guard``: a 408).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11Protocol(H11Protocol):
    """``H11Protocol`` that closes a connection whose next request's head is later than ``read_timeout``."""

    read_timeout: float  # set by ``timed_protocol``

    _head_timer: asyncio.TimerHandle | None = None
    _before: Any = None  # the request cycle when the wait began: another one means a head has come

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        self._await_head()  # first: the super call may parse a pipelined request's head at once
        super().on_response_complete()

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_timer is not None and self.cycle is not self._before:
            self._stop_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_timer()
        self._before = self.cycle
        self._head_timer = self.loop.call_later(self.read_timeout, self._head_late)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def timed_protocol(read_timeout: float) -> type[TimedH11Protocol]:
    """The protocol class uvicorn builds each connection with (its ``http`` setting), with this time limit."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout": read_timeout})
