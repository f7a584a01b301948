"""The app's first frame, drawn before Textual is imported.

Importing Textual and building the app take most of a second on a slow machine (a bare Textual app alone takes
~0.46 s on our 2-core CI machines), and the terminal would stay as it was all that time. This module, of the
standard library only, draws a frame at once (the title and "starting…" on the alternate screen) and puts the
terminal in the input mode Textual will use: keys typed meanwhile are neither echoed over the frame nor lost, they
wait in the terminal's queue and reach the app when it starts (text typed lands in the chat prompt).

Textual's driver takes the terminal over (``take_over``, from ``tui.driver``): it stays on the alternate screen (a
second switch clears the screen in some terminals) and restores the state from before this frame at exit. If the
app never starts (a bad config, Ctrl-C during the imports), leaving ``first_frame``'s block restores it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

ALT_SCREEN_ON = "\x1b[?1049h"
TITLE = "tuillm"
STARTING = "starting…"
INPUT, OUTPUT = 0, 2  # Textual reads keys from stdin and draws on stderr


# The terminal's attributes (termios) from before the frame shown, until the app's driver takes the terminal over.
_pending: list | None = None


def take_over() -> list | None:
    """For the app's driver as it starts, once: the terminal's attributes from before the first frame (the state
    to restore at exit), or None where no frame is shown. The frame's own restoring is then the driver's."""
    global _pending
    before, _pending = _pending, None
    return before


@contextmanager
def first_frame() -> Iterator[None]:
    """Shows the first frame where the app will own a terminal; the terminal as it was after the block unless the
    app's driver took it over."""
    global _pending
    before = _pending = _terminal()
    try:  # from before the terminal changes: a Ctrl-C or stop signal while the frame is drawn restores it too
        if before is not None and not _show(before):
            before = _pending = None
        yield
    finally:
        if before is not None and _pending is before:  # not taken over: the app never started
            _restore(before)
        _pending = None


def _terminal() -> list | None:
    """The terminal the app will draw on, as it is now; None where there is none (or no frame is wanted)."""
    term = os.environ.get("TERM", "")
    # A driver chosen by the environment (Textual's TEXTUAL_DRIVER) may not take the terminal over.
    if term in ("", "dumb") or "TEXTUAL_DRIVER" in os.environ or not (os.isatty(INPUT) and os.isatty(OUTPUT)):
        return None
    try:
        import termios
    except ImportError:  # not a POSIX system: Textual's own driver there
        return None
    try:
        return termios.tcgetattr(INPUT)
    except termios.error:  # a terminal that hung up
        return None


def _show(before: list) -> bool:
    """The frame drawn and the app's input mode set; False (and the terminal as it was) where the terminal refused."""
    import termios

    try:
        columns, lines = os.get_terminal_size(OUTPUT)
        termios.tcsetattr(INPUT, termios.TCSANOW, _app_input_mode(before))
        _write(ALT_SCREEN_ON + "\x1b[?25l" + render(columns, lines))  # and the cursor hidden, as in the app
    except (OSError, termios.error):  # a terminal that hung up, or is gone mid-way
        _restore(before)
        return False
    return True


def _app_input_mode(attributes: list) -> list:
    """The input mode Textual's driver sets (``LinuxDriver._patch_lflag``/``_patch_iflag``): no echo, keys as they
    come, no flow control (Ctrl+S and Ctrl+Q are the app's), Enter as "\\r". Ctrl-C still interrupts the start."""
    import termios

    mode = list(attributes)
    mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)  # lflag
    mode[0] &= ~(termios.IXON | termios.IXOFF | termios.ICRNL | termios.INLCR | termios.IGNCR)  # iflag
    mode[6] = list(mode[6])
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    return mode


def render(columns: int, lines: int) -> str:
    """The frame's text for a terminal of ``columns`` x ``lines``: the title on the first line and the state on the
    middle one, centred (cut to the width)."""

    def centred(line: int, text: str, style: str) -> str:
        text = text[:columns]
        return f"\x1b[{line};{max(1, (columns - len(text)) // 2 + 1)}H{style}{text}\x1b[0m"

    frame = "\x1b[0m\x1b[2J" + centred(1, TITLE, "\x1b[1m")
    if lines >= 3:
        frame += centred(lines // 2 + 1, STARTING, "\x1b[2m")
    return frame


def _write(text: str) -> None:
    data = text.encode("utf-8")
    while data:
        data = data[os.write(OUTPUT, data):]


def _restore(before: list) -> None:
    """The terminal as before the frame: the main screen, the cursor shown, its input mode."""
    import termios

    with suppress(OSError):  # a terminal that hung up takes nothing more
        _write("\x1b[?25h\x1b[?1049l")
    with suppress(OSError, termios.error):
        termios.tcsetattr(INPUT, termios.TCSANOW, before)
