"""Stopping llama.cpp part way through a prompt: a stop flag it can poll without the GIL.

llama.cpp polls an abort callback after every graph node while it evaluates a batch. A Python callback must take
the GIL each time, and with a busy event loop on the main thread (the TUI) that made a prompt evaluate about seven
times slower, so the callback is libc's ``strlen`` on the flag's C string when libc can be found.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopFlag(threading.Event):
    """A reply's stop request, also kept as a C string (empty, or "\\x01" once set) that llama.cpp can poll."""

    def __init__(self) -> None:
        super().__init__()
        self.c_flag = ctypes.create_string_buffer(2)

    def set(self) -> None:
        self.c_flag[0] = b"\x01"
        super().set()


_native_abort_fn: Any = None  # None: not looked up yet; False: libc not found


def _native_abort() -> Any:
    """An abort callback that needs no GIL: libc's ``strlen`` on the stop flag's C string (0 or 1, read as bool).

    strlen has the callback's shape (one pointer in, an integer out, low byte read as the bool). None where libc
    is not found: the caller falls back to a Python callback.
    """
    global _native_abort_fn
    if _native_abort_fn is None:
        import llama_cpp

        try:
            strlen = ctypes.CDLL(None).strlen
        except (OSError, AttributeError, TypeError):
            _native_abort_fn = False
        else:
            _native_abort_fn = llama_cpp.ggml_abort_callback(ctypes.cast(strlen, ctypes.c_void_p).value)
    return _native_abort_fn or None


class AbortHook:
    """Points a llama.cpp context's abort callback at a ``StopFlag`` until ``clear()`` (clearing twice is fine)."""

    def __init__(self, ctx: Any, stop: StopFlag) -> None:
        import llama_cpp

        self._ctx = ctx
        self.active = True
        abort = _native_abort()
        if abort is not None:
            llama_cpp.llama_set_abort_callback(ctx, abort, ctypes.cast(stop.c_flag, ctypes.c_void_p))
        else:
            # Held on self: the C side keeps only a pointer to the callback.
            self._python_abort = llama_cpp.ggml_abort_callback(lambda _data: stop.is_set())
            llama_cpp.llama_set_abort_callback(ctx, self._python_abort, None)

    def clear(self) -> None:
        if self.active:
            import llama_cpp

            llama_cpp.llama_set_abort_callback(self._ctx, llama_cpp.ggml_abort_callback(), None)
            self.active = False


@contextmanager
def abort_hook(ctx: Any, stop: StopFlag) -> Iterator[AbortHook]:
    hook = AbortHook(ctx, stop)
    try:
        yield hook
    finally:
        hook.clear()
