"""The real ``tuillm`` binary: --version, --help, ``models`` and ``info``, and their bad inputs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ggufs import write_tiny_gguf
from tuillm.tui.cli.models import CTX

TUILLM = str(Path(sys.executable).with_name("tuillm"))
KEYS = {"path", "format", "arch", "params", "file_type", "size_bytes", "context_length", "est_memory_bytes", "fits"}


def tuillm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())


def test_version_and_help() -> None:
    out = tuillm("--version")
    assert out.returncode == 0 and out.stdout.startswith("tuillm 0.")
    help_text = tuillm("--help").stdout
    for command in ("models", "info", "convert", "quantize", "chat", "train", "merge", "export-lora"):
        assert f"    {command}" in help_text, command


def test_models_json_lists_the_demo_and_a_folder(isolated_home: Path) -> None:
    (isolated_home / "models").mkdir()
    write_tiny_gguf(isolated_home / "models" / "tiny.gguf")
    out = tuillm("models", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by_name = {m["name"]: m for m in data["models"]}
    assert KEYS <= set(by_name["demo"])
    assert by_name["demo"]["arch"] == "llama" and by_name["demo"]["fits"] == "fits"
    assert by_name["tiny"]["source"] == "folder" and by_name["tiny"]["params"] > 0


def test_models_table_and_problems(isolated_home: Path) -> None:
    (isolated_home / "models").mkdir()
    (isolated_home / "models" / "junk.gguf").write_text("this is a text file, not a model\n")
    out = tuillm("models")
    assert out.returncode == 0
    header, *rows = out.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "SOURCE", "ARCH"]
    assert any(r.split()[0] == "demo" and "llama" in r for r in rows)
    assert "junk.gguf" in out.stderr and "not a GGUF file" in out.stderr


def test_info_json_of_the_demo() -> None:
    out = tuillm("info", "demo", "--json", "--ctx", "2048")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert KEYS <= set(data)
    assert data["arch"] == "llama" and 120e6 < data["params"] < 150e6
    assert data["file_type"] == "Q4_1" and data["has_chat_template"] is True
    assert data["est_ctx"] == 2048 and data["max_ctx_that_fits"] == 8192


def test_info_text_of_a_written_gguf(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = tuillm("info", str(path))
    assert out.returncode == 0
    assert "arch           llama" in out.stdout and "file type      F16" in out.stdout


def _bad_inputs(tmp_path: Path, demo: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(demo.read_bytes()[:3_000_000])
    text = tmp_path / "notes.gguf"
    text.write_text("plain text renamed to .gguf\n")
    future = tmp_path / "future.gguf"
    future.write_bytes(b"GGUF" + struct.pack("<I", 7) + b"\0" * 64)
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    return {
        "missing": (tmp_path / "missing.gguf", "no such file"),
        "folder": (folder, "no config.json"),
        "truncated": (truncated, "truncated"),
        "text": (text, "not a GGUF file"),
        "version": (future, "unsupported GGUF version 7"),
    }


@pytest.mark.parametrize("case", ["missing", "folder", "truncated", "text", "version"])
def test_info_bad_input_is_one_line(tmp_path: Path, demo_gguf: Path, case: str) -> None:
    path, problem = _bad_inputs(tmp_path, demo_gguf)[case]
    out = tuillm("info", str(path))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in out.stderr


def test_train_with_a_missing_dataset_says_so_in_one_line(tmp_path: Path) -> None:
    out = tuillm("train", "demo", "--data", str(tmp_path / "d.jsonl"), "-o", str(tmp_path / "out"))
    assert out.returncode == 1
    assert "d.jsonl: no such file" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["info", "demo"], ["models"]])
@pytest.mark.parametrize("after", [False, True], ids=["before", "after the command"])
def test_a_config_problem_is_one_line_and_the_command_runs(tmp_path: Path, command: list[str], after: bool) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[load]\nthread = 2\nctx = 8\n")
    # --config after the command (as every other flag is given) was a usage error
    out = tuillm(*command, "--config", str(config), "--json") if after else \
        tuillm("--config", str(config), *command, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)
    assert out.stderr.splitlines() == [
        f"tuillm: {config}: load.ctx: must be {CTX.expected()}, not 8; using the default; "
        "unknown keys, not read (kept in the file): load.thread (did you mean load.threads?)"]


def test_a_config_in_another_folder_reads_its_relative_entries_from_there(tmp_path: Path) -> None:
    # `--config ../conf/c.toml` is found from the cwd (a command-line path), and its `dirs = ["models"]` and
    # [model."models/tiny.gguf"] name conf/models, not the cwd's models folder (one that is there too).
    conf, work = tmp_path / "conf", tmp_path / "work"
    for folder in (conf / "models", work / "models"):
        folder.mkdir(parents=True)
    write_tiny_gguf(conf / "models" / "tiny.gguf")
    write_tiny_gguf(work / "models" / "other.gguf", name="other")
    (conf / "c.toml").write_text('[models]\ndirs = ["models"]\n[load]\nctx = 2048\n'
                                 '[model."models/tiny.gguf"]\nctx = 1024\n')
    out = subprocess.run([TUILLM, "models", "--json", "--config", "../conf/c.toml"], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy(), cwd=work)
    assert out.returncode == 0 and out.stderr == ""
    by_name = {m["name"]: m for m in json.loads(out.stdout)["models"]}
    assert "other" not in by_name
    assert Path(by_name["tiny"]["path"]).resolve() == (conf / "models" / "tiny.gguf").resolve()
    assert by_name["tiny"]["est_ctx"] == 1024  # its own section, found by the absolute path the catalog gives it
