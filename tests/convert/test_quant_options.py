"""Checks of what users give the quantizer: --tensor-type, --calibration, --imatrix files, the llama.cpp tools'
location, and the CLI's one-line refusals for each (exit 1, nothing left behind). No tool runs here."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert import llama_tools
from tuillm.convert.errors import ConvertError
from tuillm.convert.imatrix import CALIBRATION_MIN_BYTES, check_calibration, check_imatrix
from tuillm.convert.llama_tools import STAMP, ToolMissing, find_tool
from tuillm.convert.quant_rules import check_tensor_types
from tuillm.tui.cli import main
from tuillm.tui.cli.convert import imatrix_options


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny"))


# --- --tensor-type ---------------------------------------------------------------------------------------------------


def test_tensor_types_as_llama_quantize_reads_them() -> None:
    assert check_tensor_types(["token_embd=Q8_0", r"ATTN_V\.weight=q6_k", "token_embd=f16"]) == {
        "token_embd": "q8_0", r"attn_v\.weight": "q6_k"}  # lower-cased; a repeated pattern: the first wins
    # A plain group, an escaped "(" made optional and a small count are the same in C++'s std::regex.
    assert list(check_tensor_types([r"blk\.(?:1|2)\.=q8_0", r"x\(?=q8_0", r"blk\.\d{1,2}\.=q8_0",
                                    r"^blk\.(1\d|2[0-3])\.ffn_.*=q8_0", r"[a-z]+\d*_.*=q8_0"])) == [
        r"blk\.(?:1|2)\.", r"x\(?", r"blk\.\d{1,2}\.", r"^blk\.(1\d|2[0-3])\.ffn_.*", r"[a-z]+\d*_.*"]


@pytest.mark.parametrize(("item", "said"), [
    ("token_embd", "write PATTERN=TYPE"),
    ("=q8_0", "write PATTERN=TYPE"),
    ("token_embd=", "write PATTERN=TYPE"),
    ("token_embd=q9_k", "unknown ggml type 'q9_k'"),
    ("token_embd=q4_k_m", "unknown ggml type 'q4_k_m'"),  # a file type, not a tensor type
    ("blk.(0=q8_0", "not a valid pattern"),
    ("(?!x)blk=q8_0", "lookarounds"),
    (r"(a)\1=q8_0", "backreferences"),
    ("(?i)blk=q8_0", "inline flags are not supported"),  # std::regex refuses it: llama-quantize failed mutely
    ("blk{99999999999}=q8_0", "a repetition count above 64"),  # was an OverflowError (a crash report)
    ("blk{2,99999999999}=q8_0", "a repetition count above 64"),
    # Each took minutes per tensor name in Python's re (and std::regex) before the first line was written.
    ("(.*.*)*z=q8_0", "a repeated group can take exponential time"),
    ("(.|.)*z=q8_0", "a repeated group can take exponential time"),
    (".*.*.*.*z=q8_0", "more than 3 repetitions"),
    ("a" * 201 + "=q8_0", "at most 200 characters"),
    ("tok\x1b[31m=q8_0", "printable"),
])
def test_bad_tensor_types_are_one_line(item: str, said: str) -> None:
    with pytest.raises(ConvertError, match=None) as info:
        check_tensor_types([item])
    assert said in str(info.value) and "\n" not in str(info.value)


# --- --calibration ---------------------------------------------------------------------------------------------------


def test_calibration_checks(tmp_path: Path) -> None:
    good = tmp_path / "text.txt"
    good.write_text("Plain calibration prose. " * 200, encoding="utf-8")
    assert check_calibration(good) == good
    cases = {"missing.txt": "no such file", "short.txt": "bytes; a calibration text has",
             "huge.txt": "bytes; a calibration text has", "binary.txt": "binary data",
             "latin1.txt": "not UTF-8", ".": "not a regular file"}
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    with (tmp_path / "huge.txt").open("wb") as f:
        f.truncate(17 * 1024 * 1024)  # sparse: bounded by its size before anything is read
    (tmp_path / "binary.txt").write_bytes(b"text\0" * CALIBRATION_MIN_BYTES)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * CALIBRATION_MIN_BYTES)
    for name, said in cases.items():
        with pytest.raises(ConvertError) as info:
            check_calibration(tmp_path / name)
        assert said in str(info.value), name


# --- --imatrix FILE --------------------------------------------------------------------------------------------------


def _gguf_imatrix(path: Path, *, kind: str = "imatrix") -> Path:
    writer = gguf.GGUFWriter(path, arch="")
    writer.add_string("general.type", kind)
    writer.add_tensor("blk.0.ffn_down.weight.in_sum2", np.ones((1, 64), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_down.weight.counts", np.ones((1, 1), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_imatrix_file_checks(tmp_path: Path, demo_gguf: Path) -> None:
    assert check_imatrix(_gguf_imatrix(tmp_path / "m.imatrix")) == tmp_path / "m.imatrix"
    legacy = tmp_path / "m.dat"  # llama.cpp's old layout: entries, then name length and name of the first
    legacy.write_bytes((1).to_bytes(4, "little") + (21).to_bytes(4, "little") + b"blk.0.ffn_down.weight" +
                       b"\0" * 64)
    assert check_imatrix(legacy) == legacy
    (tmp_path / "noise.dat").write_bytes(os.urandom(4096))
    (tmp_path / "empty.dat").write_bytes(b"")
    cases = {"missing.imatrix": "no such file", "noise.dat": "not an importance matrix",
             "empty.dat": "not an importance matrix", ".": "not a regular file"}
    for name, said in cases.items():
        with pytest.raises(ConvertError) as info:
            check_imatrix(tmp_path / name)
        assert said in str(info.value), name
    with pytest.raises(ConvertError, match="a GGUF file, but not an importance matrix"):
        check_imatrix(demo_gguf)  # a model is not a matrix


# --- where the tools are -------------------------------------------------------------------------------------------


def _fake_tool(folder: Path, name: str = "llama-quantize", version: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    if version is not None:
        (folder / STAMP).write_text(version + "\n")
    return tool


def test_tools_missing_says_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(llama_tools.ENV, raising=False)
    with pytest.raises(ToolMissing) as info:
        find_tool("llama-imatrix", bin_dir=tmp_path)
    message = str(info.value)
    assert "llama-imatrix" in message and "run `make`" in message and "\n" not in message


def test_tools_of_another_version_are_not_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(llama_tools.ENV, raising=False)
    _fake_tool(tmp_path, version="0.0.1")
    with pytest.raises(ToolMissing, match=r"built for llama-cpp-python 0\.0\.1"):
        find_tool("llama-quantize", bin_dir=tmp_path)
    (tmp_path / STAMP).write_text(llama_tools.binding_version())
    assert find_tool("llama-quantize", bin_dir=tmp_path) == tmp_path / "llama-quantize"


def test_tools_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = _fake_tool(tmp_path / "mine")
    monkeypatch.setenv(llama_tools.ENV, str(tmp_path / "mine"))
    assert find_tool("llama-quantize", bin_dir=tmp_path / "venv") == mine
    with pytest.raises(ToolMissing, match="llama-imatrix is not in TUILLM_LLAMA_TOOLS"):
        find_tool("llama-imatrix", bin_dir=tmp_path / "venv")


# --- the CLI: one line, exit 1, nothing written -------------------------------------------------------------------


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    _, err = capsys.readouterr()
    return code, err.strip()


@pytest.mark.parametrize(("extra", "said"), [
    (["--imatrix", "/nonexistent/m.imatrix"], "--imatrix /nonexistent/m.imatrix: no such file"),
    (["--imatrix", "auto", "--calibration", "/nonexistent/c.txt"], "--calibration /nonexistent/c.txt: no such"),
    (["--imatrix", "{out}/m.imatrix", "--calibration", "{out}/c.txt"], "--calibration is for --imatrix auto"),
    (["--tensor-type", "token_embd"], "write PATTERN=TYPE"),
    (["--tensor-type", "token_embd=q7"], "unknown ggml type 'q7'"),
    (["--output-tensor-type", "big"], "unknown ggml type 'big'"),
    (["--type", "f16", "--tensor-type", "token_embd=q8_0"], "--tensor-type applies to quantized types"),
    (["--type", "f16", "--imatrix", "auto"], "an importance matrix applies to the types llama.cpp quantizes"),
    # Given as "" (an unset variable): a path read "." ("--imatrix .: not a regular file"), a type was skipped.
    (["--imatrix", ""], "--imatrix: an empty value"),
    (["--imatrix", "auto", "--calibration", " "], "--calibration: an empty value"),
    (["--output-tensor-type", ""], "--output-tensor-type: an empty value"),
    (["--token-embedding-type", ""], "--token-embedding-type: an empty value"),
])
def test_cli_refuses_bad_options(extra: list[str], said: str, tiny: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _gguf_imatrix(out / "m.imatrix")
    (out / "c.txt").write_text("calibration " * 300)
    before = sorted(out.iterdir())
    extra = [e.replace("{out}", str(out)) for e in extra]
    args = ["convert", str(tiny), "-o", str(out / "t.gguf"), *(["--type", "q4_k_m"] if "--type" not in extra
                                                                else []), *extra]
    code, err = _run(args, capsys)
    assert code == 1 and said in err and len(err.splitlines()) == 1, err
    assert sorted(out.iterdir()) == before


@pytest.mark.parametrize("suffix", [".imatrix", ".imatrix.json"])
def test_cli_refuses_an_output_named_as_the_automatic_matrix(suffix: str, tiny: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # The model was written over the matrix (or its record) that later runs reuse by that name.
    out = tmp_path / f"{tiny.name}{suffix}"
    code, err = _run(["convert", str(tiny), "-o", str(out), "--type", "q4_k_m", "--imatrix", "auto"], capsys)
    assert code == 1 and err == f"tuillm: {out}: the name --imatrix auto keeps the importance matrix under; name " \
        "the output otherwise"
    assert list(tmp_path.iterdir()) == []


def test_cli_imatrix_auto_in_any_case() -> None:
    args = argparse.Namespace(imatrix="Auto", calibration="c.txt")
    assert imatrix_options(args) == ("auto", Path("c.txt"))  # "AUTO" was looked for as a file
    assert imatrix_options(argparse.Namespace(imatrix=None, calibration=None)) == (None, None)
    assert imatrix_options(argparse.Namespace(imatrix=" NONE", calibration=None)) == ("none", None)


def test_imatrix_none_quantizes_without_one_and_refuses_the_types_that_need_one(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuillm.core.conversion.imatrix_step import resolve_imatrix

    # q4_k_m takes a matrix but does without; "none" was read as a file named so.
    assert resolve_imatrix(tiny, [("q4_k_m", tmp_path / "t.gguf")], "none", None, None) is None
    out = tmp_path / "t.gguf"
    code, err = _run(["convert", str(tiny), "-o", str(out), "--type", "iq2_xs", "--imatrix", "none"], capsys)
    assert (code, err) == (1, "tuillm: iq2_xs: llama.cpp writes it only with an importance matrix; leave out "
                              "--imatrix none (auto is then used)")
    code, err = _run(["convert", str(tiny), "-o", str(out), "--type", "q4_k_m", "--imatrix", "none",
                      "--calibration", str(tmp_path / "c.txt")], capsys)
    assert code == 1 and "--calibration is for --imatrix auto" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_tools_missing_is_one_line(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(llama_tools, "venv_bin", lambda: tmp_path / "no-tools")
    monkeypatch.delenv(llama_tools.ENV, raising=False)
    for extra in (["--imatrix", "auto"], ["--type", "iq2_xs"], ["--tensor-type", "token_embd=q8_0"]):
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        type_args = [] if "--type" in extra else ["--type", "q4_k_m"]
        code, err = _run(["convert", str(tiny), "-o", str(out / "t.gguf"), *type_args, *extra], capsys)
        assert code == 1 and "run `make`" in err and len(err.splitlines()) == 1, err
        assert list(out.iterdir()) == []  # refused before anything was written


# --- the automatic matrix's reuse key --------------------------------------------------------------------------------


def test_an_automatic_matrix_is_reused_only_for_its_key(tiny: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from tuillm.convert import imatrix as im

    path = _gguf_imatrix(tmp_path / "tiny.imatrix")
    key = im.imatrix_key(tiny, "some calibration text")
    with pytest.raises(ConvertError, match="tuillm did not make it"):
        im.reusable(path, key)  # a file of the user's under our name: refused, never replaced
    im.record(path, key)
    assert im.reusable(path, key)
    assert not im.reusable(path, replace(key, calibration=im.imatrix_key(tiny, "another text").calibration))
    assert not im.reusable(path, replace(key, llama_cpp="0.0.1"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "config.json").write_text((tiny / "config.json").read_text() + "\n")  # a changed source
    assert im.source_fingerprint(copy) != im.source_fingerprint(tiny)
    assert not im.reusable(path, im.imatrix_key(copy, "some calibration text"))
    path.write_bytes(b"damaged")
    assert not im.reusable(path, key)  # the right sidecar, but not a matrix any more: computed again
