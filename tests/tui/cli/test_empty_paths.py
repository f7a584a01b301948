"""An empty path on the command line (a script's unset variable) is one line and exit 1, never the current folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuillm.core.paths import demo_model_path
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


NO_USER = "~no-such-user-tuillm/x"  # "~models", a slip for "~/models": Path.expanduser raised RuntimeError


@pytest.mark.parametrize("argv", [
    ["info", NO_USER], ["convert", NO_USER, "-o", "out.gguf"],
    ["quantize", NO_USER, "-o", "out.gguf", "--type", "q4_0"],
    ["quantize", str(demo_model_path()), "-o", f"{NO_USER}.gguf", "--type", "q4_0"],
    ["chat", "demo", "--lora", NO_USER, "-p", "hi"],
    ["merge", "demo", NO_USER, "-o", "out.gguf"], ["train", "demo", "--data", NO_USER, "-o", "out"],
    ["quants", NO_USER],
])
def test_a_tilde_naming_no_user_is_one_line(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # (quantize warns of a quantized input first)
    assert last.startswith("tuillm: ~no-such-user-tuillm"), last  # named as given: no such file or folder
    assert list(tmp_path.iterdir()) == []
