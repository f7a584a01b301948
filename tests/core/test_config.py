from __future__ import annotations

from pathlib import Path

from tuillm.core import paths
from tuillm.core.config import default_model_dirs, load_config


def test_defaults_without_a_file(isolated_home: Path) -> None:
    config = load_config()
    assert config.problem is None
    assert config.model_dirs == [isolated_home / ".local/share/tuillm/models", isolated_home / "models"]
    assert config.model_dirs == default_model_dirs()


def test_reads_the_xdg_file(tmp_path: Path) -> None:
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text(
        f'[models]\ndirs = ["{tmp_path}", "~/llms"]\nscan_ollama = false\n[load]\nctx = 2048\n'
    )
    config = load_config()
    assert config.model_dirs == [tmp_path, Path.home() / "llms"]
    assert config.scan_ollama is False and config.default_ctx == 2048


def test_malformed_file_reports_its_line_and_uses_defaults(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models]\ndirs = ["a",\n  oops\n')
    config = load_config(bad)
    assert config.model_dirs == default_model_dirs()
    assert str(bad) in config.problem and "line 3" in config.problem


def test_wrong_types_are_reported(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[models]\ndirs = 3\n")
    config = load_config(file)
    assert config.model_dirs == default_model_dirs()
    assert "models.dirs" in config.problem


def test_missing_explicit_file_is_reported(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml")
    assert "no such config file" in config.problem
