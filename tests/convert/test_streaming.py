"""Streaming: tensors cut into pieces give the same file, peak memory stays flat on a ~2 GB checkpoint, and a
cancel, a failed write or a stop signal in the middle of the parallel writing stops the pool and leaves nothing."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.checkpoints import synthetic_checkpoint, tiny_random_checkpoint
from tuillm.convert import hf_to_gguf
from tuillm.convert.checkpoint import Checkpoint
from tuillm.convert.errors import ConvertError
from tuillm.convert.progress import ConvertProgress
from tuillm.core.events import Cancelled


@pytest.fixture(scope="module")
def tiny_bf16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny-bf16"), dtype="bfloat16")


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tuillm-convert")]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else set()


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_pieces_give_identical_bytes(out_type: str, tiny_bf16: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_bf16
    whole = hf_to_gguf.convert_hf(folder, tmp_path / "whole.gguf", out_type)
    # 4096 values per unit: every matrix (and q/k, by whole heads) is written in several pieces.
    monkeypatch.setattr(hf_to_gguf, "UNIT_ELEMENTS", 4096)
    pieces = hf_to_gguf.convert_hf(folder, tmp_path / "pieces.gguf", out_type)
    assert whole.read_bytes() == pieces.read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak RSS from /proc")
def test_peak_rss_of_2gb_conversion(tmp_path: Path) -> None:
    folder = synthetic_checkpoint(tmp_path / "big", 2_000_000_000)
    assert (folder / "model.safetensors").stat().st_size > 1_900_000_000
    script = (
        "import sys\n"
        "from tuillm.convert.hf_to_gguf import convert_hf\n"
        "convert_hf(sys.argv[1], sys.argv[2], 'q8_0', threads=2)\n"
        # VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork, kept over exec).
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "big.gguf")], check=True,
                          timeout=600, capture_output=True, text=True)
    peak_mb = int(proc.stdout.split()[-1]) / 1024
    assert (tmp_path / "big.gguf").stat().st_size > 1_000_000_000
    print(f"peak RSS of the 2 GB conversion: {peak_mb:.0f} MB")
    assert peak_mb < 600


def test_cancel_mid_write_stops_the_pool_and_leaves_nothing(tiny_bf16: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The TUI's cancel (Cancelled raised from the progress callback) with pieces in flight."""
    monkeypatch.setattr(hf_to_gguf, "UNIT_ELEMENTS", 4096)
    seen: list[ConvertProgress] = []

    def progress(p: ConvertProgress) -> None:
        seen.append(p)
        if p.tensors_done == 3:
            raise Cancelled()

    out = tmp_path / "out"
    out.mkdir()
    fds = _open_fds()
    with pytest.raises(Cancelled):
        hf_to_gguf.convert_hf(tiny_bf16, out / "x.gguf", "f16", progress=progress, threads=4)
    assert [p.tensors_done for p in seen] == [0, 1, 2, 3]
    assert 0 < seen[-1].bytes_done < seen[-1].bytes_total
    assert list(out.iterdir()) == []
    assert _pool_threads() == []
    assert _open_fds() == fds  # the output's descriptor closed, none left to the checkpoint's files


def test_failed_piece_stops_the_pool_and_leaves_nothing(tiny_bf16: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A read failing in a worker (here: as a full disk would) is one line; the other pieces stop; no file."""
    monkeypatch.setattr(hf_to_gguf, "UNIT_ELEMENTS", 4096)
    real = Checkpoint.read_raw
    calls = []

    def failing(self: Checkpoint, name: str, *args: object):  # noqa: ANN202
        calls.append(name)
        if len(calls) == 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, *args)

    monkeypatch.setattr(Checkpoint, "read_raw", failing)
    out = tmp_path / "out"
    out.mkdir()
    fds = _open_fds()
    with pytest.raises(ConvertError, match="no space left on device"):
        hf_to_gguf.convert_hf(tiny_bf16, out / "x.gguf", "f16", threads=3)
    assert list(out.iterdir()) == []
    assert _pool_threads() == []
    assert _open_fds() == fds


def test_sigterm_mid_write_leaves_nothing(tiny_bf16: Path, tmp_path: Path) -> None:
    """``tuillm convert`` stopped from outside while its pool writes: exit 143, one line, no file, no hang."""
    out = tmp_path / "out"
    out.mkdir()
    # Pieces slowed down (a slow disk) so that the signal surely lands while they are being written.
    script = (
        "import sys, time\n"
        "import tuillm.convert.hf_to_gguf as h\n"
        "h.UNIT_ELEMENTS = 4096\n"
        "fast = h.bf16_to_f16\n"
        "h.bf16_to_f16 = lambda *a, **k: (time.sleep(0.05), fast(*a, **k))[1]\n"
        "from tuillm.tui.cli import main\n"
        f"sys.exit(main(['convert', {str(tiny_bf16)!r}, '-o', {str(out / 'x.gguf')!r}, '--type', 'f16', '-q']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # The temporary is sized (ftruncate) once the header is written: from then on the pool is writing.
        while not any(p.stat().st_size for p in out.iterdir() if p.name.endswith(".part")):
            assert proc.poll() is None and time.monotonic() < deadline, "the conversion never started writing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr == "tuillm: stopped by SIGTERM\n"
    assert list(out.iterdir()) == []
