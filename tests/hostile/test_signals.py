"""Signals and the last-resort guard. SIGTERM and SIGHUP (a dropped SSH session) stop every command as Ctrl-C does:
one line, exit 128 + the signal, temporaries removed, llama.cpp's quantizer child stopped; a run killed outright
(SIGKILL) leaves no quantizer running and its temporaries go with the next run that writes the same output. An
unexpected exception is one line naming the crash log (exit 2), never a traceback.

The real binary in subprocesses, on inputs big or slow enough to be caught mid-work: a synthetic checkpoint of
about 300 MB (seconds to convert, more to K-quantize), a tiny random one for merge and training.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.checkpoints import synthetic_checkpoint, tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tests.hostile.hangup_terminal import HangupTerminal
from tests.hostile.test_outputs import run_cli, tree
from tests.processes import children_running
from tuillm.convert.errors import ConvertError
from tuillm.core.errors import TuillmError
from tuillm.core.paths import state_dir
from tuillm.tui import cli

TUILLM = str(Path(sys.executable).with_name("tuillm"))
QUANTIZER = "tuillm.convert.quantize"


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([TUILLM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def wait_for_line(proc: subprocess.Popen[str], ready: Callable[[str], bool]) -> list[str]:
    """stderr's lines up to the first that ``ready`` accepts (the process is then mid-work)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if ready(line):
            return seen
    raise AssertionError(f"the process ended first: {''.join(seen)[-2000:]}")


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, rest = proc.communicate(timeout=timeout)
    return proc.returncode, rest


def gone(pids: list[int], timeout: float = 10) -> bool:
    """Every process in ``pids`` has ended (a zombie waiting for its reaper counts as ended)."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return all(p.status() == psutil.STATUS_ZOMBIE for p in alive if p.is_running())


def quantizer_children(pid: int) -> list[int]:
    """The quantizer child of ``pid``, once it has started (the quantize step's first line comes just before)."""
    for _ in range(600):  # x 0.05 s: a bound so that a broken test fails instead of hanging
        found = [c.pid for c in children_running(psutil.Process(pid), QUANTIZER)]
        if found:
            return found
        time.sleep(0.05)
    return []


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_checkpoint(tmp_path_factory.mktemp("big") / "big", 300_000_000, n_embd=512)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def sizes(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file's size and mtime: 'unchanged' for a checkpoint too big to compare byte by byte in every test."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


STOPS = [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "name"), STOPS)
def test_stop_mid_convert(big: Path, tmp_path: Path, signum: int, name: str) -> None:
    before = sizes(big)
    proc = start("convert", str(big), "-o", str(tmp_path / "big.gguf"), "--type", "f16")
    wait_for_line(proc, lambda line: line.startswith("convert: ") or line.startswith("1/1 f16: "))
    proc.send_signal(signum)
    code, rest = finish(proc)
    assert code == 128 + signum
    assert rest.splitlines()[-1] == f"tuillm: stopped by {name}" and "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []  # no temporary, no half file
    assert sizes(big) == before


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "name"), STOPS)
def test_stop_mid_k_quant_stops_the_quantizer(big: Path, tmp_path: Path, signum: int, name: str) -> None:
    proc = start("convert", str(big), "-o", str(tmp_path / "big.gguf"), "--type", "q4_k_m")
    wait_for_line(proc, lambda line: line.startswith("2/2 q4_k_m: "))
    children = quantizer_children(proc.pid)
    assert children, "the quantizer runs in a child process"
    proc.send_signal(signum)
    code, rest = finish(proc)
    assert (code, rest.splitlines()[-1]) == (128 + signum, f"tuillm: stopped by {name}"), rest
    assert gone(children, timeout=1)  # stopped by the parent, not left to finish
    assert list(tmp_path.iterdir()) == []  # neither the 16-bit intermediate nor the quantizer's file


@pytest.mark.slow
def test_killed_mid_k_quant_no_orphan_and_the_next_run_sweeps(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "big.gguf"
    proc = start("convert", str(big), "-o", str(out), "--type", "q4_k_m")
    wait_for_line(proc, lambda line: line.startswith("2/2 q4_k_m: "))
    children = quantizer_children(proc.pid)
    proc.send_signal(signal.SIGKILL)  # no cleanup possible
    proc.communicate(timeout=60)
    assert gone(children), "the quantizer outlived its parent"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left and all(name.startswith(".") and str(proc.pid) in name for name in left)

    again = subprocess.run([TUILLM, "convert", str(big), "-o", str(out), "--type", "q8_0", "-q"],
                           capture_output=True, text=True, timeout=600)
    assert (again.returncode, again.stdout, again.stderr) == (0, f"{out}\n", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.gguf"]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "name"), STOPS)
def test_stop_mid_merge(tiny: Path, tmp_path: Path, signum: int, name: str) -> None:
    from tests.convert.test_lora_to_gguf import make_adapter

    adapter = make_adapter(tiny, tmp_path / "lora")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = tree(tmp_path)
    proc = start("merge", str(tiny), str(adapter), "-o", str(out_dir / "merged.gguf"))
    wait_for_line(proc, lambda line: line.startswith("merge: "))  # the merged folder is being written
    proc.send_signal(signum)
    code, rest = finish(proc)
    assert (code, rest.splitlines()[-1]) == (128 + signum, f"tuillm: stopped by {name}"), rest
    assert tree(tmp_path) == before  # the merge folder beside the output is gone, the inputs as they were


def _train(tiny: Path, tmp_path: Path, out: Path, *extra: str) -> list[str]:
    data = write_fact_dataset(tmp_path / "d.jsonl", 8)
    return ["train", str(tiny), "--data", str(data), "-o", str(out), "--rank", "4", "--max-len", "64",
            "--batch-size", "2", "--max-steps", "30", "--save-every", "0", "--device", "cpu", *extra]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "name"), STOPS)
def test_stop_mid_train_saves_a_checkpoint(tiny: Path, tmp_path: Path, signum: int, name: str) -> None:
    """As Ctrl-C: the step finishes, a checkpoint is saved, --resume continues; nothing half-written is left."""
    out = tmp_path / "adapter"
    proc = start(*_train(tiny, tmp_path, out))
    wait_for_line(proc, lambda line: line.startswith("step 1/30"))
    proc.send_signal(signum)
    code, rest = finish(proc)
    assert code == 128 + signum, rest
    assert "cancelled after step" in rest and "Traceback" not in rest
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    assert all(not p.name.startswith(".") for p in (out / "checkpoints").iterdir())

    done = subprocess.run([TUILLM, *_train(tiny, tmp_path, out, "--resume", "-q")], capture_output=True,
                          text=True, timeout=600)
    assert (done.returncode, done.stdout) == (0, f"{out}\n"), done.stderr[-2000:]
    assert not [p for p in out.rglob(".*")]


@pytest.mark.slow
def test_stop_before_training_starts_leaves_nothing(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    proc = start(*_train(tiny, tmp_path, out))
    wait_for_line(proc, lambda line: line.startswith("load: "))  # nothing trained yet: nothing to save
    proc.send_signal(signal.SIGHUP)
    code, rest = finish(proc)
    assert (code, rest.splitlines()[-1]) == (129, "tuillm: stopped by SIGHUP"), rest
    assert not out.exists()


# --- in this process: the guard and the handlers --------------------------------------------------------------


def _failing_run(monkeypatch: pytest.MonkeyPatch, exc: BaseException | Callable[[], None]) -> None:
    def run(_args: object) -> int:
        if callable(exc):
            exc()
        raise exc  # type: ignore[misc]

    monkeypatch.setattr(cli.importlib.import_module("tuillm.tui.cli.info"), "run", run)


def test_a_terminal_is_gone_only_after_its_hangup() -> None:
    from tuillm.tui.cli.signals import terminal_gone

    master, slave = os.openpty()
    read, write = os.pipe()
    try:
        assert not terminal_gone(slave) and not terminal_gone(write)  # a live terminal; a pipe
        os.close(master)  # as sshd does when the session drops: the kernel hangs the terminal up
        assert terminal_gone(slave)
    finally:
        for fd in (slave, read, write):
            os.close(fd)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_interpreters_shutdown_ends_it_quietly(signum: int, tmp_path: Path) -> None:
    # The command is done; something at exit is slow (a thread joined, an atexit callback): a Ctrl-C there printed
    # Python's traceback of the callback it cut.
    script = ("import atexit, sys, time\n"
              "from tuillm.tui.cli import entry\n"
              "atexit.register(time.sleep, 60)\n"
              "atexit.register(lambda: print('exiting', flush=True))\n"
              "sys.argv = ['tuillm', 'models', '--json']\n"
              "entry()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.stdout is not None
    out = ""
    while "exiting" not in out:
        line = proc.stdout.readline()
        assert line, "the command ended before its shutdown"
        out += line
    proc.send_signal(signum)
    code, err = finish(proc, timeout=20)
    assert (code, err) == (128 + signum, "")
    assert out.startswith("{\n  \"models\"")  # what the command printed was written


@pytest.mark.parametrize(("signum", "name"), STOPS)
def test_stop_mid_chat_reply(signum: int, name: str, tmp_path: Path) -> None:
    # The reply's own Ctrl-C handling took the signal for a Ctrl-C: "interrupted", exit 130
    proc = subprocess.Popen([TUILLM, "chat", "demo", "-p", "Write a long story about the sea.", "-n", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert proc.stdout is not None
    assert proc.stdout.read(5)  # the reply is streaming
    proc.send_signal(signum)
    code, err = finish(proc)
    assert (code, err.splitlines()[-1]) == (128 + signum, f"tuillm: stopped by {name}")


@pytest.mark.slow
@pytest.mark.parametrize("work", ["chat", "k-quant"])
def test_a_terminal_that_hangs_up_mid_work_ends_the_command_as_sighup(work: str, big: Path, tmp_path: Path) -> None:
    """The terminal goes before its SIGHUP comes (or with none): the next write fails (EIO), or the quantizer
    child's does. That was a crash report (exit 2, a traceback in the crash log) or a quantizer error (exit 1); it is
    a hangup: exit 129, the cleanup done, nothing logged."""
    out = tmp_path / "out"
    out.mkdir()
    argv = ([TUILLM, "chat", "demo", "-p", "Write a long story about the sea.", "-n", "2000"] if work == "chat"
            else [TUILLM, "convert", str(big), "-o", str(out / "big.gguf"), "--type", "q4_k_m"])
    terminal = HangupTerminal(argv, tmp_path)
    try:
        terminal.wait_for(b"the" if work == "chat" else b"q4_k_m: [")  # the reply streams; the quantizer runs
        terminal.hang_up()
        assert terminal.proc.wait(timeout=120) == 128 + signal.SIGHUP
    finally:
        terminal.close()
    assert list(out.iterdir()) == []  # no temporary, no half file
    assert not (state_dir() / "crash.log").exists()


@pytest.mark.parametrize(("raised", "code", "line"), [
    (KeyboardInterrupt(), 130, "interrupted"),
    (ConvertError("x.gguf: a converter error, uncaught"), 1, "x.gguf: a converter error, uncaught"),
    (lambda: os.kill(os.getpid(), signal.SIGTERM), 143, "stopped by SIGTERM"),
    (lambda: os.kill(os.getpid(), signal.SIGHUP), 129, "stopped by SIGHUP"),
    # a file name holding a newline: still one line (a script reading stderr's last line gets the whole error)
    (TuillmError("data\n.jsonl: no such file"), 1, "data .jsonl: no such file"),
], ids=["sigint", "convert-error", "sigterm", "sighup", "newline-in-a-name"])
def test_one_line_and_the_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                    raised: object, code: int, line: str) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    _failing_run(monkeypatch, raised)  # type: ignore[arg-type]
    assert run_cli(["info", "x"], capsys) == (code, "", f"tuillm: {line}\n")
    assert {s: signal.getsignal(s) for s in previous} == previous  # the command's handlers are undone


def test_unexpected_error_names_the_crash_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    _failing_run(monkeypatch, RuntimeError("boom\x1b]0;pwned\x07\nsecond line"))
    log = state_dir() / "crash.log"
    assert log == tmp_path / "state" / "tuillm" / "crash.log"
    line = f"tuillm: unexpected error: RuntimeError: boom; details in {log}\n"  # the escape sequence gone
    assert run_cli(["info", "x"], capsys) == (2, "", line)
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text


def test_unexpected_error_in_the_binary(tmp_path: Path) -> None:
    """The real binary: a bug (here a monkeypatched command) is exit 2 and one line; the traceback only in the log."""
    code = ("import sys\nfrom tuillm.tui import cli\nimport tuillm.tui.cli.models as m\n"
            "def run(args):\n    return {}['missing']\n"
            "m.run = run\nsys.exit(cli.main(['models']))\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    log = tmp_path / "tuillm" / "crash.log"
    assert (proc.returncode, proc.stderr) == (2, f"tuillm: unexpected error: KeyError: 'missing'; details in {log}\n")
    assert "Traceback" in log.read_text()
