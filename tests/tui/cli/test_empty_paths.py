"""An empty path on the command line (a script's unset variable) is one line and exit 1, never the current folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuillm.tui.cli import main


@pytest.mark.parametrize(("argv", "error"), [
    (["convert", "", "-o", "out.gguf"], "no source named (an empty path)"),
    (["quantize", "", "-o", "out.gguf", "--type", "q4_0"], "no source named (an empty path)"),
    (["merge", "demo", "", "-o", "out.gguf"], "no adapter folder named (an empty path)"),
    (["merge", "demo", "adapter", "-o", ""], "no output file named (an empty path)"),
    (["export-lora", "", "--base", "demo", "-o", "out.gguf"], "no adapter folder named (an empty path)"),
    (["export-lora", "adapter", "--base", "demo", "-o", ""], "no output file named (an empty path)"),
])
def test_an_empty_path_is_refused(argv: list[str], error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # what an empty path, read as a path, would name
    (tmp_path / "adapter").mkdir()
    assert main(argv) == 1
    assert capsys.readouterr().err == f"tuillm: {error}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
