"""Renders core events on a terminal for the CLI: a redrawn progress line on a TTY, plain lines otherwise.

An event's text can name a file or quote a model's metadata: it is made terminal-safe here, where it is written.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tuillm.core.events import Event, Log, Metric, Progress
from tuillm.core.text import safe_line, safe_text


class CliRenderer:
    """Callable as an ``emit``; prints to stderr so stdout stays clean for results."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._last_draw = 0.0
        self._open_line = False
        self._last_plain: tuple[str, int] | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Log):
            if not self.quiet or event.level != "info":
                self._line(event.message if event.level == "info" else f"{event.level}: {event.message}")
        elif isinstance(event, Metric) and not self.quiet:
            self._line(f"{event.name} = {event.value:.4g} (step {event.step})")

    def _line(self, text: str) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
        self.stream.write(safe_text(text) + "\n")
        self.stream.flush()

    def _progress(self, p: Progress) -> None:
        if self.quiet:
            return
        fraction = p.fraction
        finished = fraction is not None and fraction >= 1.0
        now = time.monotonic()
        if self.tty:
            if not finished and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            width = 30
            if fraction is None:
                bar = f"{p.done:g}"
            else:
                filled = int(width * min(fraction, 1.0))
                bar = "[" + "#" * filled + "-" * (width - filled) + f"] {fraction * 100:5.1f}%"
            # Our own CSI erases the line; the event's text is one safe line, so it cannot move the cursor.
            self.stream.write(f"\r\x1b[2K{safe_line(f'{p.stage}: {bar} {p.message}')}")
            self._open_line = True
            if finished:
                self.stream.write("\n")
                self._open_line = False
            self.stream.flush()
        else:
            # Piped: one line per 10% step so logs stay short.
            decile = int((fraction or 0) * 10)
            if self._last_plain == (p.stage, decile) and not finished:
                return
            self._last_plain = (p.stage, decile)
            pct = f"{fraction * 100:.0f}%" if fraction is not None else f"{p.done:g}"
            self._line(safe_line(f"{p.stage}: {pct} {p.message}").rstrip())


def print_path(path: object) -> None:
    """A command's result path on stdout, for scripts (``out=$(tuillm merge …)``): exact when piped, as ``ls``
    prints names; on a terminal, without the control characters a file name may hold."""
    text = str(path)
    print(safe_line(text) if sys.stdout.isatty() else text)
