"""SIGTERM and SIGHUP (a dropped SSH session) stop a command the way Ctrl-C does.

Each raises ``Stopped`` (a KeyboardInterrupt) where the program is, so the same cleanup runs: temporaries are
removed by the writers' ``finally``/``except BaseException`` blocks, llama.cpp's quantizer child is killed. The
command then exits with 128 + the signal's number and one line. Only the first one counts: a second must not cut
the cleanup short (SIGKILL remains; the next run removes what a killed one leaves).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)

Handler = Callable[[int, FrameType | None], object]


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP), raised like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def line(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


def terminal_gone(fd: int) -> bool:
    """Whether ``fd`` is a terminal that hung up (its SSH session dropped): the kernel then answers its ioctls with
    EIO. A live terminal answers, a pipe or a file says it is none (ENOTTY)."""
    try:
        import termios
    except ImportError:  # not a POSIX system: no hangups to tell apart
        return False
    try:
        termios.tcgetattr(fd)
    except termios.error as exc:
        return bool(exc.args) and exc.args[0] == errno.EIO
    except (OSError, ValueError):
        return False
    return False


def output_hung_up() -> bool:
    """Whether stdout or stderr is a terminal that hung up; then their output goes nowhere from now on."""
    if not any(terminal_gone(fd) for fd in (1, 2)):
        return False
    leave_gone_terminal(signal.SIGHUP)
    return True


def leave_gone_terminal(signum: int) -> None:
    """After a hangup whose terminal is gone, writing to it fails (EIO): the output goes nowhere from now on, so
    the cleanup (or the checkpoint a training run saves) is not cut short by a failed progress line. A SIGHUP sent
    to a program whose terminal is still there (``kill -HUP``) leaves the output alone: the app restores the screen
    and says why it stopped."""
    if signum != getattr(signal, "SIGHUP", None):
        return
    try:
        if not terminal_gone(sys.stderr.fileno()):
            return
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def ignore_stop_signals() -> None:
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    ignore_stop_signals()
    leave_gone_terminal(signum)
    raise Stopped(signum)


@contextmanager
def handled(signals: tuple[int, ...], handler: Handler) -> Iterator[None]:
    """``handler`` for ``signals`` inside the block; the previous handlers after it. In the main thread only (the
    only one Python lets set handlers): elsewhere (a test's thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def quiet_exit_on_signals() -> None:
    """The command is done and Python is shutting down (joining threads, atexit callbacks): a Ctrl-C or stop
    signal now ends the process at once with 128 + its number, where Python would print a traceback of the
    shutdown code it cut. What is buffered for stdout and stderr is written first."""

    def leave(signum: int, _frame: FrameType | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):  # a closed or gone stream: nothing more to write
                stream.flush()
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(s, leave)


def stop_signals_as_interrupts() -> AbstractContextManager[None]:
    """SIGTERM and SIGHUP raise ``Stopped`` inside the block."""
    return handled(STOP_SIGNALS, _raise_stopped)
