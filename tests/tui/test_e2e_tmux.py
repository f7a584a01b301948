"""End to end: the installed ``tuillm`` binary in a real terminal (tmux at 80x24), as a user over SSH sees it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (the Makefile installs it)"),
]

# A bound on waiting for the screen, only so a broken app fails the test instead of hanging it.
WAIT_LIMIT = 60.0


def tuillm_binary() -> str:
    beside = Path(sys.executable).with_name("tuillm")  # the venv's console script
    found = str(beside) if beside.is_file() else shutil.which("tuillm")
    assert found, "the tuillm console script is not installed (make installs it into .venv)"
    return found


class Tmux:
    """A private tmux server (its own socket) running one command in a session called "main".

    The command runs under ``sh``, which writes its exit status to a file: tmux itself sometimes leaves the
    exited process unreaped (pane dead, no status), so the file is the reliable sign that it ended.
    """

    def __init__(self, status_file: Path) -> None:
        self.socket = f"tuillm-test-{uuid.uuid4().hex[:12]}"
        self.status_file = status_file

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"tmux {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        command = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(self.status_file))}"
        env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        # remain-on-exit keeps the last screen for the failure messages.
        self("new-session", "-d", "-s", "main", "-x", "80", "-y", "24", *env_args, "sh", "-c", command,
             ";", "set-option", "-t", "main", "remain-on-exit", "on")

    def exit_status(self) -> str | None:
        """The command's exit status once it has ended, else None."""
        text = self.status_file.read_text() if self.status_file.is_file() else ""
        return text.strip() or None

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "main")

    def wait_for(self, ready: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            status = self.exit_status()
            if status is not None:
                pytest.fail(f"tuillm exited (status {status}) before the screen showed {what}:\n{screen}")
            if time.monotonic() > deadline:
                pytest.fail(f"the screen never showed {what}; last screen:\n{screen}")
            time.sleep(0.2)

    def quit(self) -> None:
        """Ctrl+Q, as a user quits: the app must exit with status 0."""
        self("send-keys", "-t", "main", "C-q")
        self.wait_for(lambda _s: self.exit_status() is not None, "tuillm exiting on ctrl+q")
        assert self.exit_status() == "0"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def line_from_bottom(screen: str, n: int) -> str:
    """Line ``n`` counted from the bottom (1: the footer), or "" while the screen is not drawn yet."""
    lines = screen.splitlines()
    return lines[-n] if len(lines) >= n else ""


def demo_row(screen: str) -> str | None:
    return next((line for line in screen.splitlines() if line.split()[:2] == ["demo", "llama"]), None)


def test_models_table_in_a_real_terminal(isolated_home: Path) -> None:
    models = isolated_home / "models"  # one of the default model folders
    models.mkdir()
    (models / "broken.gguf").write_bytes(b"this is not a GGUF file")
    tmux = Tmux(isolated_home / "exit-status")
    env = {k: os.environ[k] for k in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                                      "HF_HUB_CACHE", "OLLAMA_MODELS", "HF_HUB_OFFLINE")}
    try:
        tmux.start([tuillm_binary()], env)
        # The app opens on the Chat pane (its prompt); F3 shows the models.
        # Keys are read once the app is mounted: the footer is filled in a frame after the first paint.
        tmux.wait_for(lambda s: "Enter sends" in s and "^n New" in line_from_bottom(s, 1), "the Chat pane's prompt")
        tmux("send-keys", "-t", "main", "F3")
        # Wait for the row's verdict (the notification about broken.gguf, top right, leaves the row's right end),
        # for the Models pane's footer (redrawn a frame after the focus moved, listing the Chat's till then) and for
        # the list of unreadable files: one screen with all of them, whatever order the frames came in.
        screen = tmux.wait_for(lambda s: (demo_row(s) or "x").split()[-1] in ("fits", "big", "tight")
                               and "^r Refresh" in line_from_bottom(s, 1)
                               and "1 unreadable" in s and "broken.gguf: not a GGUF file" in s,
                               "the demo model's row, the Models pane's footer and the unreadable file")
        row = demo_row(screen)
        assert row is not None and "135M" in row and "Q4_1" in row and "8K" in row
        assert row.split()[-1] in ("fits", "big", "tight")  # "too big" splits in two words
        header = next(line for line in screen.splitlines() if line.lstrip().startswith("Name"))
        assert header.split() == ["Name", "Arch", "Params", "Quant", "Size", "Context", "Est.", "mem", "Fit"]
        for shown in ("F1 Help", "^r Refresh", "^q Quit", "^p"):
            assert shown in line_from_bottom(screen, 1)
        assert "Models F3" in screen.splitlines()[1]  # the tabs name the panes' keys

        tmux("send-keys", "-t", "main", "F1")  # F-keys through tmux: the help lists the bindings
        screen = tmux.wait_for(lambda s: "Esc or F1 closes" in s, "the help screen")
        assert "Refresh" in screen and "Models pane" in screen
        tmux("send-keys", "-t", "main", "Escape")
        tmux.wait_for(lambda s: "Esc or F1 closes" not in s, "the help screen closing")
        # The status line, once the notification about broken.gguf has gone from over its right end.
        screen = tmux.wait_for(lambda s: "no model loaded" in line_from_bottom(s, 2), "the status line")
        assert line_from_bottom(screen, 2).lstrip().startswith("RAM") and "GiB" in line_from_bottom(screen, 2)

        tmux.quit()
    finally:
        tmux.kill()
