"""Small files read and written whole. A path holding a NUL (pasted into a field, or a settings string's
``\\u0000``) is refused in words where it enters core: os.stat and open raised ValueError ("embedded null byte"),
which reached the user as a crash report."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tuillm.convert.output import TEMP_MARK, replacing
from tuillm.core.conversion.plan import open_source
from tuillm.core.errors import TuillmError
from tuillm.core.files import NUL_PATH, FileRefused, input_problem, named_path, read_bounded, write_atomic
from tuillm.core.models.catalog import resolve_model
from tuillm.core.settings import Config


def test_a_path_with_a_nul_is_refused_in_words(tmp_path: Path) -> None:
    real = tmp_path / "model.gguf"
    real.write_bytes(b"GGUF")
    text = f"{real}\x00.txt"  # the part before the NUL exists: nothing may look it up instead
    assert input_problem(Path(text)) == NUL_PATH
    with pytest.raises(TuillmError, match=r"^output folder: not a path \(it holds a NUL character\)$"):
        named_path(text, "output folder")
    with pytest.raises(FileRefused, match=r"^notes: not a path \(it holds a NUL character\)$"):
        read_bounded(text, 1 << 10, shown="notes", limit_of="an attachment")
    for call in (lambda: resolve_model(text, Config(model_dirs=[tmp_path])), lambda: open_source(Path(text))):
        with pytest.raises(TuillmError) as caught:
            call()
        assert str(caught.value).endswith(NUL_PATH)  # (the front ends show it through safe_line)


def test_a_file_written_whole_keeps_its_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    """A config holding a serve key, chmod 600 by its user, stayed 0600 only by chance: settings' mkstemp made every
    saved file 0600 (and another writer kept none of a file's mode)."""
    private, public = tmp_path / "config.toml", tmp_path / "chat.md"
    private.write_bytes(b"old")
    private.chmod(0o600)
    write_atomic(private, b"new key")
    write_atomic(public, b"# a chat\n")
    assert private.read_bytes() == b"new key" and stat.S_IMODE(private.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(public.stat().st_mode) == 0o666 & ~umask  # a new file: as any file made
    public.chmod(0o640)
    write_atomic(public, b"# again\n")
    assert stat.S_IMODE(public.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.md", "config.toml"]


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "settings.toml"
    target.write_bytes(b"kept")
    with pytest.raises(KeyboardInterrupt), replacing(target, "tmp") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt  # a signal mid-write
    assert target.read_bytes() == b"kept" and [p.name for p in tmp_path.iterdir()] == ["settings.toml"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no such folder" / "x.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["settings.toml"]


def test_a_killed_writer_s_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "catalog.json"
    stale = target.with_name(f".catalog.json.{TEMP_MARK}{_dead_pid()}.tmp")  # temp_name's, with another pid
    stale.write_bytes(b"half of a killed run's write")
    write_atomic(target, b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.json"]


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
