"""Streaming: tensors cut into pieces give the same file, and peak memory stays flat on a ~2 GB checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkpoints import synthetic_checkpoint, tiny_random_checkpoint
from tuillm.convert import hf_to_gguf


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_pieces_give_identical_bytes(out_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_random_checkpoint("llama", tmp_path / "ckpt", dtype="bfloat16")
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
