"""A full disk during llama.cpp's quantize step: blamed on the output's folder, with the space it needs, never on
the input (llama.cpp itself only says "basic_ios::clear: iostream error"), and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.quantize import no_space_message
from tuillm.tui.cli import main


def _statvfs(free_bytes: int, block: int = 4096) -> os.statvfs_result:
    blocks = free_bytes // block
    return os.statvfs_result((block, block, 10 * blocks + 10, blocks, blocks, 100, 50, 50, 0, 255))


def test_too_little_space_is_named_with_the_sizes(tmp_path: Path) -> None:
    def fake(path: Path) -> os.statvfs_result:
        assert path == tmp_path
        return _statvfs(40_960_000)

    assert no_space_message(tmp_path, 105_000_000, statvfs=fake) == (
        f"{tmp_path}: no space left on device (needs about 105 MB, 41 MB free)")
    # What the failed partial output holds is freed with it, so it counts as free.
    assert no_space_message(tmp_path, 105_000_000, 70_000_000, statvfs=fake) is None
    assert no_space_message(tmp_path, 3_000_000_000, statvfs=fake) == (
        f"{tmp_path}: no space left on device (needs about 3.0 GB, 41 MB free)")


def test_enough_space_is_not_the_reason(tmp_path: Path) -> None:
    plenty = _statvfs(10**12)
    assert no_space_message(tmp_path, 105_000_000, statvfs=lambda _: plenty) is None
    # ... unless the failure says so itself.
    assert no_space_message(tmp_path, 105_000_000, detail=": write: No space left on device",
                            statvfs=lambda _: plenty) == f"{tmp_path}: no space left on device"

    def unreadable(path: Path) -> os.statvfs_result:
        raise PermissionError(13, "denied")

    assert no_space_message(tmp_path, 105_000_000, statvfs=unreadable) is None


# --- a real full disk: a small tmpfs (needs the right to mount; skipped without it) --------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        folder = tmp_path / "small"
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


NO_SPACE = r"tuillm: {}: no space left on device \(needs about \d+ MB, \d+ MB free\)\n"


def test_quantize_into_a_full_disk(tiny: Path, tmp_path: Path, small_disk, capsys) -> None:
    f16 = tmp_path / "tiny-f16.gguf"
    assert main(["convert", str(tiny), "-o", str(f16), "--type", "f16", "-q"]) == 0
    small = small_disk(1024 * 1024)  # the q4_k_m output is about 5 MB
    capsys.readouterr()
    assert main(["quantize", str(f16), "-o", str(small / "y.gguf"), "--type", "q4_k_m", "-q"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(NO_SPACE.format(re.escape(str(small))), err), err
    assert list(small.iterdir()) == []


def test_convert_whose_quantize_step_fills_the_disk(tiny: Path, tmp_path: Path, small_disk, capsys) -> None:
    """The 16-bit intermediate fits, the quantized output does not: the message names the folder (not the
    temporary intermediate) and counts the intermediate in what is needed."""
    f16 = tmp_path / "tiny-f16.gguf"
    assert main(["convert", str(tiny), "-o", str(f16), "--type", "f16", "-q"]) == 0
    small = small_disk(f16.stat().st_size + 1024 * 1024)
    capsys.readouterr()
    assert main(["convert", str(tiny), "-o", str(small / "x.gguf"), "--type", "q4_k_m", "-q"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(NO_SPACE.format(re.escape(str(small))), err), err
    needed, free = (int(n) for n in re.findall(r"(\d+) MB", err))
    assert needed * 1e6 > f16.stat().st_size and free * 1e6 > f16.stat().st_size  # the intermediate counts in both
    assert list(small.iterdir()) == []
