"""Relative paths in the settings file name places beside the file (as git reads its config), not in the folder
tuillm was started in: the same file means the same folders wherever it starts."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_saving_keeps_the_names_as_written_and_the_section_s_other_keys_and_round_trips(
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
    assert data["model"] == {"models/a.gguf": {"note": "mine", "ctx": 512}}  # its name and the user's own key kept
    assert data["models"]["dirs"] == ["models", "../shared/gguf", "~/m", "/abs/llms"]
    monkeypatch.chdir(two)
    again = load_config(conf / "c.toml")
    assert again.problem.endswith('.note') and again.defaults_for(model).ctx == 512
    assert again.model_dirs == config.model_dirs


def test_a_save_of_another_setting_writes_relative_and_tilde_names_back_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any save (the Settings dialog, a theme picked, a folder added) wrote /home/u/.config/tuillm/models for the
    # user's "models", and $HOME spelt out for "~/m": the file no longer moved with its folder or its user.
    conf = tmp_path / "conf"
    conf.mkdir()
    text = ('[models]\ndirs = ["models", "./models", "~/m", "../shared/gguf"]\n'
            '[model."models/a.gguf"]\nctx = 1024\n[model."~/b.gguf"]\nn_gpu_layers = 0\n')
    (conf / "c.toml").write_text(text)
    monkeypatch.chdir(_cwds(tmp_path)[0])
    config = load_config(conf / "c.toml")
    before = (config.model_dirs, dict(config.model_defaults))
    config.default_ctx = 8192  # an unrelated setting
    save_config(config)
    data = tomllib.loads((conf / "c.toml").read_text())
    assert data["models"]["dirs"] == ["models", "./models", "~/m", "../shared/gguf"]
    assert data["model"] == {"models/a.gguf": {"ctx": 1024}, "~/b.gguf": {"n_gpu_layers": 0}}
    again = load_config(conf / "c.toml")
    assert (again.model_dirs, again.model_defaults) == before and again.default_ctx == 8192
    assert again.defaults_for(Path.home() / "b.gguf").n_gpu_layers == 0
    # A folder or a model added through the UI is written absolute; one removed goes; the others keep their names.
    new = tmp_path / "new"
    again.model_dirs = [again.model_dirs[0], again.model_dirs[2], new]
    again.set_defaults_for(conf / "models" / "a.gguf", ModelDefaults())
    again.set_defaults_for(new / "c.gguf", ModelDefaults(ctx=256))
    save_config(again)
    data = tomllib.loads((conf / "c.toml").read_text())
    assert data["models"]["dirs"] == ["models", "~/m", str(new)]
    assert data["model"] == {"~/b.gguf": {"n_gpu_layers": 0}, str(new / "c.gguf"): {"ctx": 256}}


def test_one_model_in_several_spellings_is_read_and_saved_as_one(tmp_path: Path) -> None:
    # "models/a.gguf", "./models/a.gguf" and its absolute path are one model: the later table replaced the
    # earlier one whole (its ctx lost without a word), and a save kept one of them, the others' keys dropped.
    file = tmp_path / "c.toml"
    model = tmp_path / "models" / "a.gguf"
    file.write_text(f'[model."models/a.gguf"]\nctx = 1024\nnote = "mine"\n[model."./models/a.gguf"]\n'
                    f'n_gpu_layers = 0\n[model."{model}"]\nctx = 512\nother = 1\n')
    config = load_config(file)
    assert config.defaults_for(model) == ModelDefaults(ctx=512, n_gpu_layers=0)
    assert ('[model."./models/a.gguf"] and [model."models/a.gguf"] name one model: read as one (a key both set: '
            "the later value) and saved as one") in config.problem
    save_config(config)
    data = tomllib.loads(file.read_text())
    assert data["model"] == {"models/a.gguf": {"note": "mine", "other": 1, "ctx": 512, "n_gpu_layers": 0}}
    assert load_config(file).defaults_for(model) == ModelDefaults(ctx=512, n_gpu_layers=0)


def test_model_tables_with_only_the_user_s_keys_are_kept(tmp_path: Path) -> None:
    # A table with no setting of ours (or one whose settings were cleared) and a value that is no table were
    # dropped at every save, with the user's keys in them.
    file = tmp_path / "c.toml"
    file.write_text('[model]\n"x.gguf" = 3\n[model."a.gguf"]\nnote = "mine"\n[model."b.gguf"]\nctx = 1024\n'
                    'note = "b"\n[model."c.gguf"]\nctx = 2048\n')
    config = load_config(file)
    config.set_defaults_for(tmp_path / "b.gguf", ModelDefaults())
    config.set_defaults_for(tmp_path / "c.gguf", ModelDefaults())
    save_config(config)
    assert tomllib.loads(file.read_text())["model"] == {"x.gguf": 3, "a.gguf": {"note": "mine"},
                                                        "b.gguf": {"note": "b"}}


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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), max_size=6))
def test_any_folder_names_survive_a_save_as_written(entries: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "c.toml"
        file.write_text(tomli_w.dumps({"models": {"dirs": entries}}), encoding="utf-8")
        config = load_config(file)
        config.default_ctx = 2048
        save_config(config)
        kept = [e for e in entries if e.strip() and "\0" not in e]  # the others are reported and skipped
        assert tomllib.loads(file.read_text(encoding="utf-8"))["models"]["dirs"] == kept
        assert load_config(file).model_dirs == config.model_dirs
