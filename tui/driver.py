"""Textual's terminal driver, with output that survives the terminal hanging up (an SSH session dropping).

Textual writes every frame from a thread whose queue holds 30 writes; the first write that fails (EIO once the
terminal is gone) ends that thread, and the app then blocks forever on the full queue, so its jobs' cleanup never
runs and the process stays. Whether that write comes before or after the SIGHUP is a race. Here the output drops
what a gone terminal cannot take, and tells the app, which quits as on SIGHUP even when no signal reaches it.

It also takes the terminal over from the frame drawn before Textual was imported (``tui.first_frame``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

from tuillm.tui import first_frame


class TerminalGone(Message):
    """The terminal took no more output (it hung up): the app should quit as on SIGHUP."""


class TerminalOutput:
    """The file Textual's writer thread writes to: ``file`` until a write fails, nothing after it."""

    def __init__(self, file: TextIO, on_gone: Callable[[], None]) -> None:
        self._file = file
        self._on_gone = on_gone
        self.gone = False

    def write(self, text: str) -> int:
        self._try(lambda: self._file.write(text))
        return len(text)

    def flush(self) -> None:
        self._try(self._file.flush)

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return self._file.isatty()

    def _try(self, act: Callable[[], object]) -> None:
        if self.gone:
            return
        try:
            act()
        except (OSError, ValueError):  # EIO after a hangup; ValueError: the file was closed at exit
            self.gone = True
            self._on_gone()


class HangupSafeDriver(LinuxDriver):
    """``LinuxDriver`` writing through ``TerminalOutput``, taking the terminal over from the first frame."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        stream = sys.__stderr__
        if stream is not None:  # Textual's own choice of output; the one attribute its writer thread reads
            self._file = TerminalOutput(stream, self._gone)
        self._on_alternate_screen = False

    def start_application_mode(self) -> None:
        before = first_frame.take_over()
        self._on_alternate_screen = before is not None  # the frame's: switching again clears it in some terminals
        super().start_application_mode()
        if before is not None:  # at exit (and on Ctrl+Z), the terminal as it was before the frame, not the frame's
            self.attrs_before = before

    def write(self, data: str) -> None:
        if self._on_alternate_screen and data == first_frame.ALT_SCREEN_ON:
            self._on_alternate_screen = False
            return
        super().write(data)

    def _gone(self) -> None:
        try:
            self.send_message(TerminalGone())
        except RuntimeError:  # the app's loop has already closed: it is ending anyway
            pass
