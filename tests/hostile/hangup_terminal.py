"""A terminal (a pty) that a test can hang up, as sshd does when the session drops.

The program runs in a session of its own, so the terminal is not its controlling one: closing it sends no SIGHUP,
and what the program does when its writes fail (EIO) is seen alone, as when the hangup comes before the signal.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path


class HangupTerminal:
    def __init__(self, argv: list[str], cwd: Path, rows: int = 24, cols: int = 80) -> None:
        self._master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "TERM": "xterm-256color"}, cwd=cwd)
        os.close(slave)
        self.screen = bytearray()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # The program's output must be read, or its writes block once the terminal's buffer is full. The read waits
        # in short turns: a read in progress holds the terminal open, and closing it would then not hang it up.
        while not self._stop.is_set():
            if not select.select([self._master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            self.screen.extend(data)

    def wait_for(self, text: bytes, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.1)
        assert text in self.screen, f"{text!r} never showed: {bytes(self.screen[-400:])!r}"

    def type(self, keys: bytes) -> None:
        """Keys typed at the terminal."""
        os.write(self._master, keys)

    def hang_up(self) -> None:
        self._stop.set()
        self._reader.join()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def close(self) -> None:
        self.hang_up()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
