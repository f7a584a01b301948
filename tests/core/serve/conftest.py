"""A real ``tuillm serve`` on a free loopback port, shared by a test module, with its log collected."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 60  # a bound so a broken server fails the test instead of hanging it
QUESTION = "What is the capital of France?"


@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 60, after: int = 0) -> str:
        """The first log line matching ``pattern`` from line ``after`` on (bounded wait: the line comes after the
        response)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matches {pattern!r}:\n{self.log()}")


def start_server(home: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    environ = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
               "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
               "XDG_STATE_HOME": str(home / ".local/state"), "HF_HUB_CACHE": str(home / "hf"),
               "OLLAMA_MODELS": str(home / "ollama"), "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "tuillm.tui.cli", "serve", "--port", "0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=environ)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    match = re.search(r"at (http://\S+) ", first)
    if match is None:
        proc.kill()
        raise AssertionError(f"the server did not start: {first}{proc.stderr.read()}")
    served = Served(match.group(1), proc)

    def collect() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            served.lines.append(line.rstrip("\n"))

    threading.Thread(target=collect, daemon=True).start()
    return served


def stop_server(served: Served) -> None:
    served.proc.send_signal(signal.SIGINT)
    try:
        served.proc.wait(30)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_server(tmp_path_factory.mktemp("home"), "demo")
    yield served
    stop_server(served)
    assert "Traceback" not in served.log()
