"""SIGTERM and SIGHUP (a dropped SSH session) to the full-screen app stop it as Ctrl+Q does: running jobs are
cancelled (their temporaries removed, llama.cpp's quantizer child stopped), the terminal is restored, the exit code
is 128 + the signal, and no process is left behind.

The real binary in tmux at 80x24 (tests.tui.test_e2e_tmux's Tmux), a conversion to q4_k_m running in the Convert
pane when the signal comes, so there is a 16-bit intermediate beside the output and a quantizer child to stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.checkpoints import demo_hf_checkpoint
from tests.hostile.hangup_terminal import HangupTerminal
from tests.hostile.test_signals import QUANTIZER, gone
from tests.processes import children_running
from tests.tui.app_helpers import make_app, run_async
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary

ENV_KEYS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "HF_HUB_CACHE",
            "OLLAMA_MODELS", "HF_HUB_OFFLINE")
STOPS = [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")]
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (the Makefile installs it)")


def _app_process(tmux: Tmux) -> psutil.Process:
    """The tuillm process: the child of the shell tmux runs it under."""
    shell = psutil.Process(int(tmux("display-message", "-p", "-t", "main", "#{pane_pid}").strip()))
    for _ in range(200):  # x 0.05 s: a bound so a broken test fails instead of hanging
        found = children_running(shell, "tuillm", recursive=False)
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no tuillm process under the tmux pane")


def _wait_for_quantizer(app: psutil.Process) -> list[psutil.Process]:
    for _ in range(2400):  # x 0.05 s
        found = children_running(app, QUANTIZER)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the quantizer child never started")


def _alternate_screen(tmux: Tmux) -> str:
    return tmux("display-message", "-p", "-t", "main", "#{alternate_on}").strip()


def _after(tmux: Tmux) -> list[str]:
    """The terminal's lines after the app has gone, scrollback included (the pane's last line is tmux's own)."""
    return tmux("capture-pane", "-p", "-S", "-100", "-t", "main").splitlines()


def _ended(tmux: Tmux) -> str:
    tmux.wait_for(lambda _s: tmux.exit_status() is not None, "tuillm exiting on the signal")
    return tmux.exit_status() or ""


def _start(isolated_home: Path) -> Tmux:
    tmux = Tmux(isolated_home / "exit-status")
    tmux.start([tuillm_binary()], {k: os.environ[k] for k in ENV_KEYS})
    tmux.wait_for(lambda s: "Enter sends" in s and "Quit" in line_from_bottom(s, 1), "the Chat pane")
    return tmux


@pytest.mark.slow
@needs_tmux
@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "hangup"])
def test_a_signal_mid_k_quant_stops_the_app_like_ctrl_q(isolated_home: Path, how: str) -> None:
    """``hangup``: the terminal itself goes (tmux's server killed, as an SSH drop closes the pty): the kernel sends
    SIGHUP to the app and its quantizer, and nobody is left to read an exit code."""
    models = isolated_home / "models"  # a default model folder
    models.mkdir()
    (models / "smollm2-hf").symlink_to(demo_hf_checkpoint(), target_is_directory=True)
    out_dir = Path(os.environ["XDG_DATA_HOME"]) / "tuillm" / "models"  # the default output folder
    tmux = _start(isolated_home)
    keys = lambda *k: tmux("send-keys", "-t", "main", *k)  # noqa: E731
    try:
        keys("F4")
        tmux.wait_for(lambda s: "From" in s and "^s Start" in line_from_bottom(s, 1), "the Convert pane")
        keys("Enter")
        tmux.wait_for(lambda s: "smollm2-hf (HF checkpoint, 135M)" in s, "the source list")
        # The checkpoint is the list's last entry (after the demo GGUF); where the highlight starts is Textual's.
        for key in ("End", "Enter"):
            keys(key)
            time.sleep(0.3)
        tmux.wait_for(lambda s: "smollm2-hf-Q4_K_M.gguf" in s, "the estimates")
        # One key at a time (focus changes between them): path, folder, the type list; q4_k_m comes first.
        for key in ("Tab", "Tab", "Tab", "Space", "Tab", "Tab", "Space"):  # tick q4_k_m; past Matrix; the report off
            keys(key)
            time.sleep(0.3)
        tmux.wait_for(lambda s: "1 ticked" in s, "q4_k_m ticked")
        keys("C-s")
        app = _app_process(tmux)
        quantizers = _wait_for_quantizer(app)  # the 16-bit intermediate is written: quantizing now
        everyone = [app, *app.children(recursive=True)]
        assert any(p.name.startswith(".") for p in out_dir.iterdir())  # the temporaries exist now

        if how == "hangup":
            tmux.kill()
        else:
            signum = signal.Signals[how]
            app.send_signal(signum)
            assert _ended(tmux) == str(128 + signum)
        assert gone([p.pid for p in everyone], timeout=60), "a process outlived the app"
        assert gone([q.pid for q in quantizers], timeout=1)
        assert list(out_dir.iterdir()) == []  # neither the intermediate nor the quantizer's file
        if how != "hangup":  # after a real hangup the terminal is gone: nothing is drawn or said there
            assert _alternate_screen(tmux) == "0"  # back from the full-screen mode
            assert f"tuillm: stopped by {how}" in _after(tmux)
    finally:
        tmux.kill()


@pytest.mark.slow
@needs_tmux
@pytest.mark.parametrize(("signum", "name"), STOPS)
def test_a_signal_to_the_idle_app(isolated_home: Path, signum: int, name: str) -> None:
    tmux = _start(isolated_home)
    try:
        app = _app_process(tmux)
        app.send_signal(signum)
        assert _ended(tmux) == str(128 + signum)
        assert gone([app.pid])
        lines = _after(tmux)
        assert not any("Traceback" in line for line in lines)
        # kill -HUP with the terminal still there: restored, and the line said (it was left in the app's screen
        # mode with the mouse on, its output sent to /dev/null as if the terminal were gone)
        assert _alternate_screen(tmux) == "0"
        assert f"tuillm: stopped by {name}" in lines
    finally:
        tmux.kill()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
@run_async
async def test_a_signal_before_the_app_is_up_quits_at_mount(signum: int, code: int) -> None:
    app = make_app([])
    app.stop_signal = signum  # what run_app's handler records while the event loop is not running yet
    async with app.run_test() as pilot:
        await pilot.pause()
    assert app.return_code == code


@pytest.mark.slow
def test_a_terminal_that_hangs_up_without_a_sighup_still_ends_the_app(isolated_home: Path) -> None:
    """The terminal goes and no SIGHUP reaches the app (or only later: the kernel's signal races the next frame).
    Textual's output thread died on the first failed write and the app then hung on its full queue, jobs and all;
    now the app quits as on SIGHUP."""
    terminal = HangupTerminal([tuillm_binary()], isolated_home)
    try:
        terminal.wait_for(b"Enter sends")
        terminal.hang_up()  # every later write of the app's fails (EIO)
        assert terminal.proc.wait(timeout=60) == 128 + signal.SIGHUP
    finally:
        terminal.close()
