"""Long native work in a child process: llama.cpp's quantizer (in-library) and its tools (llama-quantize,
llama-imatrix). Neither has a progress callback nor can be interrupted, so the parent polls (progress from the
output file's growth or the tool's own output) and kills the child on cancel, an interrupt or a signal.

The child never outlives the parent, even one killed outright: on Linux the kernel sends it SIGKILL when the
parent is gone (PR_SET_PDEATHSIG, which survives the exec of a tool); everywhere a Python child also watches for
a new parent pid. A tool is started through this module (``python -m tuillm.convert.child PARENT TOOL ARGS...``),
which sets that up and then replaces itself with the tool.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

POLL_SECONDS = 0.2


def usable_cpus() -> int:
    """The CPUs this process may run on (taskset, a container's cpuset): the default thread count of our tools."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS and Windows have no affinity call: all CPUs
        return os.cpu_count() or 1


def run_child(argv: Sequence[str], poll: Callable[[], None], *,
              on_output: Callable[[bytes], None] | None = None) -> tuple[int, str]:
    """Run ``argv`` (a Python child that calls ``end_with_parent`` itself), calling ``poll`` about 5 times a
    second and ``on_output`` with what the child printed since (stdout and stderr together, in a temporary
    file: the terminal keeps our own progress); an exception from either kills the child and propagates.
    Returns (exit code, the last error line, or the last line, for a one-line message)."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        read = 0
        try:
            while True:
                try:
                    rc = proc.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    read = _feed(log, read, on_output)
                    poll()
            _feed(log, read, on_output)
        finally:
            if proc.poll() is None:  # cancelled (or interrupted): stop the child now
                proc.kill()
                proc.wait()
        if rc == 0:
            return 0, ""
        log.seek(0)
        return rc, last_error(log.read().decode("utf-8", "replace"))


def run_tool(tool: str, args: Sequence[str], poll: Callable[[], None], *,
             on_output: Callable[[bytes], None] | None = None) -> tuple[int, str]:
    """``run_child`` for a native tool, started through this module so it ends with us."""
    return run_child([sys.executable, "-m", "tuillm.convert.child", str(os.getpid()), tool, *args], poll,
                     on_output=on_output)


def _feed(log: IO[bytes], read: int, on_output: Callable[[bytes], None] | None) -> int:
    if on_output is None:
        return read
    log.seek(read)
    new = log.read()
    log.seek(0, os.SEEK_END)
    if new:
        on_output(new)
    return read + len(new)


def last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "exception" in line.lower()]
    last = (errors or lines or [""])[-1]
    return f": {last[:200]}" if last else ""


def end_with_parent(parent: int, *, watch: bool = True) -> None:
    """This process ends when ``parent`` does: SIGKILL from the kernel on Linux (PR_SET_PDEATHSIG); with
    ``watch``, also a thread that notices a new parent pid (native code runs with the GIL released, so the
    thread gets its turn)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:  # the parent is already gone
        os._exit(1)
    if not watch:
        return

    def check() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=check, name="parent-watch", daemon=True).start()


if __name__ == "__main__":  # run_tool's wrapper: PARENT TOOL ARGS...
    end_with_parent(int(sys.argv[1]), watch=False)  # the thread would not survive the exec; the signal does
    os.execv(sys.argv[2], sys.argv[2:])
