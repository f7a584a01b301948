"""Start-up: time from launch to the first frame of the real ``tuillm`` binary in a pseudo-terminal (80x24), in
one run against baselines measured alongside it.

Each run launches, in a rotating order:
  python   the bare interpreter (``python -c pass``): the floor every launch pays
  textual  a minimal Textual app (one Label) of the same interpreter: the floor of any Textual screen
  tuillm   the installed console script with no command (the app), in a scratch config and data folder
and times, from the fork, the terminal's switch to the alternate screen, the first frame (the first text placed
on it) and, for tuillm, the app's own first frame (its header: tuillm's first frame is drawn before Textual is
imported, tui.first_frame) and the chat prompt drawn, and the CPU time the program had used by its first frame
(user + system, from /proc: on a loaded machine the steadier figure, as waiting for a core is not counted). Then
Ctrl+Q. One untimed launch of each first writes the bytecode cache (a scratch one), so the runs measure a user's
every-day launch, not the first one's compiling. Prints the median of each, tuillm/textual, and the goal: the first
frame in <= 0.5 s. A last part lists the modules that cost the most to import (``python -X importtime``) on the
app's path.

Run: .venv/bin/python tests/bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ALT_SCREEN = b"\x1b[?1049h"
PLACED = re.compile(rb"\x1b\[\d+;\d+H")  # a cursor placed: a frame is being drawn
PROMPT = b"Enter sends"  # the chat prompt's placeholder
HEADER_ICON = "⭘".encode()  # Textual's Header: the app's own frame
GOAL_S = 0.5  # the first frame's goal (issue 12)
WAIT = 30.0  # a bound on one launch, only so a broken app ends the bench instead of hanging it

BARE_APP = """
from textual.app import App
from textual.widgets import Label
class Bare(App):
    def compose(self):
        yield Label("ready")
    def on_key(self, event):
        if event.key == "ctrl+q":
            self.exit()
Bare().run()
"""


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def launch(argv: list[str], env: dict[str, str], marks: dict[str, bytes | re.Pattern[bytes]]) -> dict[str, float]:
    """Seconds from the fork until each mark's bytes appear in the output (after the alternate screen), and the
    CPU seconds used by the first frame ("cpu")."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the program in the pty
        os.execve(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen: dict[str, float] = {}
    output = b""
    try:
        while not set(marks) <= set(seen) and time.perf_counter() - start < WAIT:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the program ended
                break
            output += chunk
            now = time.perf_counter() - start
            screen = output.partition(ALT_SCREEN)[2]
            for name, mark in marks.items():
                found = mark.search(screen) if isinstance(mark, re.Pattern) else (
                    mark in output if mark == ALT_SCREEN else mark in screen)
                if name not in seen and found:
                    seen[name] = now
                    if name == "first frame":
                        seen["cpu"] = cpu_seconds(pid)
        os.write(fd, b"\x11")  # Ctrl+Q
        finish(pid, fd)
    finally:
        os.close(fd)
    missing = set(marks) - set(seen)
    if missing:
        raise SystemExit(f"{argv}: never showed {sorted(missing)}; output: {output[-400:]!r}")
    return seen


def finish(pid: int, fd: int) -> None:
    """Let the program quit (reading what it writes so it never blocks); kill it past the bound."""
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        if select.select([fd], [], [], 0.05)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                pass
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def interpreter(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


# What the binary imports before its first frame: with no command, the CLI's entry module and the app (the
# subcommands' parser is not built: tui.cli.main).
BINARY_IMPORTS = "import tuillm.tui.cli; import tuillm.tui.app"


def import_costs(env: dict[str, str], top: int = 12) -> list[tuple[int, str]]:
    """The modules with the largest cumulative import time (microseconds) when the binary's imports run."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", BINARY_IMPORTS], env=env,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tuillm = str(Path(sys.executable).with_name("tuillm"))
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TERM": "xterm-256color", "XDG_CONFIG_HOME": scratch, "XDG_DATA_HOME": scratch,
               "PYTHONPYCACHEPREFIX": str(Path(scratch) / "pycache")}
        # A user's second launch reads every module's bytecode from the cache its first launch wrote; where the
        # environment forbids writing it (PYTHONDONTWRITEBYTECODE, as in some sandboxes) each launch compiled our
        # ~100 modules from source (~0.3 s here). A scratch cache and one untimed launch of each program measure
        # what users see.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        frame = {"alt screen": ALT_SCREEN, "first frame": PLACED}
        programs = {
            "python": lambda: {"exit": interpreter(env)},
            "textual": lambda: launch([sys.executable, "-c", BARE_APP], env, frame),
            "tuillm": lambda: launch([tuillm], env, {**frame, "app frame": HEADER_ICON, "prompt": PROMPT}),
        }
        names = list(programs)
        for name in names:  # the untimed launch that writes the bytecode cache
            programs[name]()
        times: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for run in range(args.runs):
            for name in names[run % 3:] + names[: run % 3]:
                times[name].append(programs[name]())
        costs = import_costs(env)

    def med(name: str, mark: str) -> float:
        return statistics.median(t[mark] for t in times[name])

    print(f"runs: {args.runs} (rotating order); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'':8} {'alt screen':>10} {'first frame':>11} {'app frame':>9} {'prompt':>7} {'cpu':>6}   (median "
          "seconds from launch; cpu: CPU seconds by the first frame)")
    print(f"{'python':8} {med('python', 'exit'):10.3f} {'':>11} {'':>9} {'':>7} {'':>6}   (interpreter start and"
          " exit)")
    print(f"{'textual':8} {med('textual', 'alt screen'):10.3f} {med('textual', 'first frame'):11.3f} {'':>9} "
          f"{'':>7} {med('textual', 'cpu'):6.3f}")
    print(f"{'tuillm':8} {med('tuillm', 'alt screen'):10.3f} {med('tuillm', 'first frame'):11.3f} "
          f"{med('tuillm', 'app frame'):9.3f} {med('tuillm', 'prompt'):7.3f} {med('tuillm', 'cpu'):6.3f}")
    first, cpu, app = med("tuillm", "first frame"), med("tuillm", "cpu"), med("tuillm", "app frame")
    print(f"tuillm/textual first frame: {first / med('textual', 'first frame'):.2f}; first frame {first:.3f} s "
          f"({first / GOAL_S:.2f}x the goal, <= {GOAL_S} s), {cpu:.3f} CPU s; the app's own frame {app:.3f} s "
          f"({app / med('textual', 'first frame'):.2f}x the bare Textual app's)")
    print("largest cumulative imports of tuillm.tui.cli and tuillm.tui.app (ms):")
    for micros, module in costs:
        print(f"  {micros / 1000:7.1f}  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
