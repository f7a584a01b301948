"""Standard streams that are not what a command expects. One the caller closed (``<&-``, ``>&-``, ``2>&-``) reads
and writes as /dev/null: the command does its work and exits as it would, never a crash on Python's None stream. A
stdout on a full disk is one line and exit 1, not a crash report; one whose reader left, exit 0 and nothing said."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.tui.cli.test_chat import FAST, TUILLM
from tuillm.core.errors import crash_log_path


def _run_closed(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``tuillm ARGS`` with ``redirect`` (e.g. ``<&-``) applied by a shell, which closes that descriptor."""
    return subprocess.run(["sh", "-c", f'exec "$0" "$@" {redirect}', TUILLM, *args], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy())


@pytest.mark.parametrize(("redirect", "args"), [
    ("<&-", ("chat", "demo", *FAST)),  # the REPL reads no message: done, as with </dev/null
    (">&-", ("chat", "demo", "-p", "Hi", *FAST)),  # the answer goes nowhere
])
def test_a_chat_with_a_closed_stream_runs(redirect: str, args: tuple[str, ...]) -> None:
    proc = _run_closed(redirect, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # was 2: AttributeError on None (isatty, write)
    assert not crash_log_path().exists()


def test_a_refusal_with_stderr_closed_keeps_its_exit_code(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    proc = _run_closed("2>&-", "merge", "demo", str(tmp_path / "adapter"), "-o", str(tmp_path / "out.gguf"))
    # exit 1: the empty adapter folder is refused (the progress renderer's isatty on None was a crash, exit 2)
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == "" and not crash_log_path().exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "adapter"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [("info", "demo"), ("models", "--json"), ("--version",)])
def test_a_stdout_on_a_full_disk_is_one_line(args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        # buffered, as a user's stdout is: what is left in the buffer failed again at exit ("Exception ignored")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        proc = subprocess.run([TUILLM, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    if args == ("--version",):  # argparse's action, before the guard: as argparse's --help, nothing said
        assert (proc.returncode, proc.stderr) == (0, "")  # was a traceback
    else:
        assert proc.returncode == 1 and proc.stderr == "tuillm: no space left on device: the output is incomplete\n"
    assert not crash_log_path().exists()  # was: "unexpected error: OSError: [Errno 28]", exit 2


@pytest.mark.parametrize("args", [("info", "demo", "--json"), ("models",)])
def test_a_reader_that_leaves_at_once_is_no_error(args: tuple[str, ...]) -> None:
    # `tuillm info demo --json | true`: the buffered output met a closed pipe at exit, past the guard
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run(["bash", "-c", 'set -o pipefail; "$0" "$@" | true; echo "exit $?" >&2', TUILLM, *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.stderr == "exit 0\n"  # was "Exception ignored ... BrokenPipeError", exit 120
