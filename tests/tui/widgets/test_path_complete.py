"""The ``@path`` completion's listing: what matches, how it is written back, and its bounds on a huge folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuillm.tui.widgets import path_complete
from tuillm.tui.widgets.path_complete import MAX_SHOWN, Candidate, candidates


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    for name in ("README.md", "readme_old.txt", "run.sh", ".env", "src/main.py", "src/pkg/util.py"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    return tmp_path


def values(typed: str, cwd: Path) -> list[str]:
    found, cut = candidates(typed, cwd)
    assert not cut
    return [c.value for c in found]


def test_matches_are_relative_to_the_working_directory(tree: Path) -> None:
    assert values("", tree) == ["README.md", "readme_old.txt", "run.sh", "src/"]  # hidden only when asked
    assert values("re", tree) == ["README.md", "readme_old.txt"]  # case does not matter, as in most completers
    assert values("src/", tree) == ["src/main.py", "src/pkg/"]
    assert values("src/pkg/u", tree) == ["src/pkg/util.py"]
    assert values(".e", tree) == [".env"]
    assert values("nothing", tree) == [] and values("no/such/dir/", tree) == []
    assert candidates("src/", tree)[0][1] == Candidate("src/pkg/", True)


def test_home_and_absolute_paths_keep_what_was_typed(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    assert values("~", tree) == ["~/"]
    assert values("~/s", tree) == ["~/src/"]
    assert values(f"{tree}/run", tree) == [f"{tree}/run.sh"]
    assert "/tmp/" in values("/tm", tree)


def test_a_huge_folder_is_read_only_in_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scan = 500  # the bound as it works at any size: a smaller one keeps the folder small
    monkeypatch.setattr(path_complete, "MAX_SCAN", scan)
    big = tmp_path / "big"
    big.mkdir()
    for i in range(scan + 200):
        (big / f"f{i:05d}.txt").touch()
    read = []
    scandir = os.scandir

    def counting(path: object):
        # The entries the completion pulls from the folder: it stops at MAX_SCAN, whatever the folder holds.
        entries = scandir(path)

        class Counted:
            def __enter__(self):
                return self

            def __exit__(self, *exc: object) -> None:
                entries.close()

            def __iter__(self):
                for entry in entries:
                    read.append(entry.name)
                    yield entry

        return Counted()

    monkeypatch.setattr(path_complete.os, "scandir", counting)
    found, cut = candidates("big/f", tmp_path)
    assert cut and len(found) == MAX_SHOWN and len(read) == scan + 1
    assert all(c.value.startswith("big/f") and not c.is_dir for c in found)


def test_a_long_list_is_cut_and_typing_narrows_it(tmp_path: Path) -> None:
    for i in range(MAX_SHOWN + 30):
        (tmp_path / f"log{i:03d}.txt").touch()
    found, cut = candidates("log", tmp_path)
    assert cut and [c.value for c in found] == [f"log{i:03d}.txt" for i in range(MAX_SHOWN)]
    found, cut = candidates("log07", tmp_path)
    assert not cut and [c.value for c in found] == [f"log07{i}.txt" for i in range(10)]
