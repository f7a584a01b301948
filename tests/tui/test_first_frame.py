"""The frame drawn before Textual is imported (tui.first_frame): at once, in the terminal mode the app will use, then
taken over by the app's driver with the keys typed meanwhile, and the terminal as it was at the end."""

from __future__ import annotations

import json
import signal
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from textual.drivers.linux_driver import LinuxDriver

from tests.hostile.hangup_terminal import HangupTerminal
from tests.tui.test_e2e_tmux import tuillm_binary
from tuillm.tui import first_frame

# Runs tuillm in the terminal it was given and records the terminal's attributes before and after.
WRAPPER = """
import json, subprocess, sys, termios
before = termios.tcgetattr(0)
code = subprocess.call([sys.argv[1]])
after = termios.tcgetattr(0)
json.dump({"code": code, "restored": before == after}, open(sys.argv[2], "w"))
"""
REPORT = "terminal.json"
STARTING = first_frame.STARTING.encode()
HEADER_ICON = "⭘".encode()  # drawn by Textual's Header: the app's own frame, not the first one


def test_the_frame_is_the_title_and_the_state_centred() -> None:
    frame = first_frame.render(80, 24)
    assert "\x1b[1;38H\x1b[1mtuillm" in frame  # (80 - 6) // 2 + 1
    assert "\x1b[13;36Hstarting…".replace("H", "H\x1b[2m", 1) in frame
    narrow = first_frame.render(4, 2)  # a terminal too small for both: the title cut to its width, alone
    assert "tuil\x1b[0m" in narrow and "tuill" not in narrow and "starting" not in narrow


def test_the_input_mode_is_the_apps_but_ctrl_c_still_interrupts() -> None:
    attributes = termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() else [
        termios.ICRNL | termios.IXON, 0, 0, termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG, 0, 0,
        [b"\x00"] * 32]
    mode = first_frame._app_input_mode(attributes)
    assert mode[0] == LinuxDriver._patch_iflag(attributes[0])
    assert mode[3] == LinuxDriver._patch_lflag(attributes[3]) | (attributes[3] & termios.ISIG)
    assert mode[6][termios.VMIN] == 1 and mode[6][termios.VTIME] == 0


@contextmanager
def tuillm_in_a_terminal(home: Path) -> Iterator[HangupTerminal]:
    """The binary in a terminal (through WRAPPER) from its first frame on; the wrapper has ended after the block."""
    terminal = HangupTerminal([sys.executable, "-c", WRAPPER, tuillm_binary(), str(home / REPORT)], home)
    try:
        terminal.wait_for(STARTING)
        yield terminal
        assert terminal.proc.wait(timeout=60) == 0
    finally:
        terminal.close()


@pytest.mark.slow
def test_a_frame_at_once_then_the_app_with_the_keys_typed_meanwhile(isolated_home: Path) -> None:
    with tuillm_in_a_terminal(isolated_home) as terminal:
        terminal.type(b"typed early")  # before the app is up: nothing echoed, nothing lost
        terminal.wait_for(b"typed early")  # in the prompt, where the placeholder would be
        terminal.type(b"\x11")  # Ctrl+Q
    screen = bytes(terminal.screen)
    assert json.loads((isolated_home / REPORT).read_text()) == {"code": 0, "restored": True}
    assert screen.count(first_frame.ALT_SCREEN_ON.encode()) == 1  # the app stayed on the frame's screen
    assert screen.index(STARTING) < screen.index(HEADER_ICON)
    assert screen.index(HEADER_ICON) < screen.index(b"typed early")  # shown by the app, never echoed before it


@pytest.mark.slow
def test_a_stop_signal_while_the_frame_shows_leaves_the_terminal_as_it_was(isolated_home: Path) -> None:
    with tuillm_in_a_terminal(isolated_home) as terminal:
        deadline = time.monotonic() + 30
        while not (children := psutil.Process(terminal.proc.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.01)
        children[0].send_signal(signal.SIGTERM)  # most often during the imports (the app's own frame ~0.5 s later)
    screen = bytes(terminal.screen)
    assert json.loads((isolated_home / REPORT).read_text()) == {"code": 128 + signal.SIGTERM, "restored": True}
    assert screen.rindex(b"\x1b[?1049l") > screen.rindex(STARTING)  # back on the main screen
    assert b"tuillm: stopped by SIGTERM" in screen[screen.rindex(b"\x1b[?1049l"):]
