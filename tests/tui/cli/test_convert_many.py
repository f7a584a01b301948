"""``tuillm convert/quantize --type a,b``: several outputs in one job, named from the source or a {type} pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.gguf_header import read_gguf_header
from tuillm.tui.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("qwen2", tmp_path_factory.mktemp("ck") / "tiny-qwen")


def _file_type(path: Path) -> int:
    return int(read_gguf_header(path).fields["general.file_type"])


def test_convert_several_types_into_a_folder(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new-folder"
    assert main(["convert", str(tiny), "-o", f"{out}/", "--type", "q8_0,q4_0,Q8_0", "-q"]) == 0
    stdout = capsys.readouterr().out.split()
    expected = [out / "tiny-qwen-Q8_0.gguf", out / "tiny-qwen-Q4_0.gguf"]  # a repeated type is written once
    assert stdout == [str(p) for p in expected]
    assert sorted(out.iterdir()) == sorted(expected)  # and the f16 intermediate is gone
    assert [_file_type(p) for p in expected] == [7, 2]


def test_quantize_several_types_with_a_pattern(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f16 = tmp_path / "m.gguf"
    assert main(["convert", str(tiny), "-o", str(f16), "-q"]) == 0
    assert main(["quantize", str(f16), "-o", str(tmp_path / "m-{TYPE}.gguf"), "--type", "q4_0,q5_0", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-Q4_0.gguf", "m-Q5_0.gguf", "m.gguf"]
    capsys.readouterr()


def test_several_types_need_a_folder_or_pattern(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tiny), "-o", str(tmp_path / "x.gguf"), "--type", "q8_0,q4_0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "several types" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tiny), "-o", str(tmp_path / "x.gguf"), "--type", "q8_0,q9_x"])
    assert exit_info.value.code == 2 and "unknown type q9_x" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_output_is_refused(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where an empty -o, read as a path, would write
    assert main(["convert", str(tiny), "-o", "", "--type", "q8_0"]) == 1
    assert capsys.readouterr().err == "tuillm: -o: an empty path; give a file, a folder, or a name with {type} in it\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "threads"), [("convert", "-1"), ("convert", "0"), ("quantize", "100000"),
                                                  ("merge", "-3")])
def test_threads_are_the_declared_range(command: str, threads: str, tiny: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # convert/merge handed -1 to a worker pool ("unexpected error: ValueError: max_workers must be greater than 0").
    source = {"convert": [str(tiny)], "quantize": [str(tmp_path / "in.gguf"), "--type", "q4_0"],
              "merge": ["demo", str(tmp_path)]}[command]
    assert main([command, *source, "-o", str(tmp_path / "out.gguf"), "--threads", threads]) == 1
    err = capsys.readouterr().err
    assert err == f"tuillm: --threads: must be \"auto\" or a whole number from 1 to 512, not '{threads}'\n"
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("source", "flags", "said"), [
    ("missing", [], "no such file or folder"),
    ("tiny", ["--tensor-type", "token_embd"], "write PATTERN=TYPE"),
])
def test_a_refused_run_makes_no_output_folder(source: str, flags: list[str], said: str, tiny: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # `-o new/` was made before the source and the flags were checked: a typo left an empty folder behind.
    src = tiny if source == "tiny" else tmp_path / source
    assert main(["convert", str(src), "-o", f"{tmp_path / 'new'}/", "--type", "q4_0", *flags]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err
    assert list(tmp_path.iterdir()) == []
