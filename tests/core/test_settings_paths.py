"""Relative paths in the settings file name places beside the file (as git reads its config), not in the folder
tuillm was started in: the same file means the same folders wherever it starts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.ggufs import write_tiny_gguf
from tuillm.core import paths
from tuillm.core.models.catalog import discover
from tuillm.core.settings import ModelDefaults, load_config, save_config
from tuillm.core.settings_file import base_folder, file_path

RELATIVE = ('[models]\ndirs = ["models", "../shared/gguf", "~/m", "/abs/llms"]\nscan_hf_cache = false\n'
            'scan_ollama = false\nscan_lmstudio = false\n'
            '[model."models/a.gguf"]\nctx = 1024\nnote = "mine"\n')


def _cwds(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "one", tmp_path / "two" / "deeper"]
    for folder in folders:
        folder.mkdir(parents=True)
    return folders


def test_relative_entries_follow_the_file_not_the_current_folder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.toml").write_text(RELATIVE)
    for cwd in _cwds(tmp_path):
        monkeypatch.chdir(cwd)
        config = load_config(conf / "c.toml")
        assert config.problem.endswith('unknown keys, not read (kept in the file): model."models/a.gguf".note')
        assert config.model_dirs == [conf / "models", conf / "../shared/gguf", Path.home() / "m", Path("/abs/llms")]
        # The model's own section is found by its absolute path, as the catalog and the panes name it.
        assert config.defaults_for(conf / "models" / "a.gguf").ctx == 1024
        assert config.defaults_for("models/a.gguf") == ModelDefaults()  # a path typed here follows the cwd
        assert list(config.model_defaults) == [str(conf / "models" / "a.gguf")]


def test_the_xdg_file_reads_relative_entries_from_its_own_folder(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text(RELATIVE)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.model_dirs[0] == paths.config_dir() / "models"
    assert config.defaults_for(paths.config_dir() / "models" / "a.gguf").ctx == 1024


def test_a_relative_config_path_reads_entries_from_that_file_s_folder(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # --config ../conf/c.toml: the file itself is found from the cwd (a command-line path); its entries from conf/.
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.toml").write_text(RELATIVE)
    work = _cwds(tmp_path)[0]
    monkeypatch.chdir(work)
    config = load_config("../conf/c.toml")
    assert config.model_dirs[0] == work / "../conf/models"
    assert config.model_dirs[0].resolve() == conf.resolve() / "models"
    assert config.defaults_for(work / "../conf/models/a.gguf").ctx == 1024


def test_saving_writes_absolute_keys_keeps_the_section_s_other_keys_and_round_trips(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.toml").write_text(RELATIVE)
    one, two = _cwds(tmp_path)
    monkeypatch.chdir(one)
    config = load_config(conf / "c.toml")
    model = conf / "models" / "a.gguf"
    config.set_defaults_for(model, ModelDefaults(ctx=512))  # as the Model settings dialog (E) saves it
    save_config(config)
    data = tomllib.loads((conf / "c.toml").read_text())
    assert data["model"] == {str(model): {"ctx": 512, "note": "mine"}}  # the user's own key in that table is kept
    assert data["models"]["dirs"][:2] == [str(conf / "models"), str(conf / "../shared/gguf")]
    monkeypatch.chdir(two)
    again = load_config(conf / "c.toml")
    assert again.problem.endswith('.note') and again.defaults_for(model).ctx == 512
    assert again.model_dirs == config.model_dirs


def test_the_catalog_finds_a_model_in_a_relative_folder_with_its_own_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf"
    (conf / "models").mkdir(parents=True)
    write_tiny_gguf(conf / "models" / "a.gguf")
    (conf / "c.toml").write_text(RELATIVE)
    monkeypatch.chdir(_cwds(tmp_path)[1])
    config = load_config(conf / "c.toml")
    found = [e for e in discover(config=config, available=1 << 40, offload=False).entries if e.path.name == "a.gguf"]
    assert [e.path for e in found] == [conf / "models" / "a.gguf"]
    assert found[0].estimate.n_ctx == 1024  # the fit is for the model's own [model."models/a.gguf"] ctx


def test_file_path_joins_relative_names_and_expands_the_tilde(tmp_path: Path) -> None:
    base = base_folder(tmp_path / "c.toml")
    assert (file_path("x", base), file_path("~/x", base), file_path("/x", base)) == \
        (tmp_path / "x", Path.home() / "x", Path("/x"))
    assert base_folder(None) == paths.config_dir()
