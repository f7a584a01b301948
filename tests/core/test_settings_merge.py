"""A save merges with the settings file as it is then: hand edits made while the app ran are kept."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tuillm.core.llama.options import Sampling
from tuillm.core.settings import ModelDefaults, backup_path, load_config, save_config

FILE = ('[load]\nctx = 2048\n[sampling]\ntemperature = 0.5\n[ui]\ntheme = "gruvbox"\n'
        '[model."/m/a.gguf"]\nctx = 512\n[model."/m/b.gguf"]\nctx = 256\n')


def test_hand_edits_made_while_the_app_ran_are_kept(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(FILE)
    config = load_config(file)
    # By hand: a key beside one, a key of another table, a model's key, an unknown key, a deletion (temperature).
    file.write_text('future = 1\n[load]\nctx = 2048\nthreads = 3\n[sampling]\ntop_k = 7\n[ui]\ntheme = "gruvbox"\n'
                    '[model."/m/a.gguf"]\nctx = 512\nn_gpu_layers = 0\n[model."/m/b.gguf"]\nctx = 256\n')
    # In the app: another key, and one model's settings cleared.
    config.kv_type = "q8_0"
    config.set_defaults_for("/m/b.gguf", ModelDefaults())
    save_config(config)
    data = tomllib.loads(file.read_text())
    assert data["future"] == 1
    assert (data["load"]["ctx"], data["load"]["threads"], data["load"]["kv_type"]) == (2048, 3, "q8_0")
    assert data["sampling"]["top_k"] == 7 and "temperature" not in data["sampling"]
    assert data["model"] == {"/m/a.gguf": {"ctx": 512, "n_gpu_layers": 0}}
    # The app has the hand edits too, as if it had read the file again.
    assert (config.threads, config.kv_type, config.sampling.top_k) == (3, "q8_0", 7)
    assert config.sampling.temperature == Sampling().temperature
    assert config.defaults_for("/m/a.gguf") == ModelDefaults(ctx=512, n_gpu_layers=0)
    assert config.problem is not None and "future" in config.problem
    assert load_config(file).threads == 3


def test_a_key_added_by_hand_where_the_file_had_none_is_kept(tmp_path: Path) -> None:
    # The file had no [load]: the save fills its defaults in, and ctx = 4096 took the place of the hand's 8192.
    file = tmp_path / "c.toml"
    file.write_text('[ui]\ntheme = "gruvbox"\n')
    config = load_config(file)
    file.write_text('[ui]\ntheme = "gruvbox"\n[load]\nctx = 8192\n[model."/m/a.gguf"]\nctx = 512\n')
    config.theme = "nord"
    save_config(config)
    data = tomllib.loads(file.read_text())
    assert (data["ui"]["theme"], data["load"]["ctx"]) == ("nord", 8192)
    assert data["model"] == {"/m/a.gguf": {"ctx": 512}}
    assert config.default_ctx == 8192 and config.defaults_for("/m/a.gguf") == ModelDefaults(ctx=512)


def test_a_key_changed_on_both_sides_takes_the_app_s_value(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(FILE)
    config = load_config(file)
    file.write_text(FILE.replace("ctx = 2048", "ctx = 1000").replace("ctx = 512", "ctx = 100")
                    .replace("temperature = 0.5", "temperature = 0.9"))
    config.default_ctx = 8192
    config.set_defaults_for("/m/a.gguf", ModelDefaults(ctx=1024))
    save_config(config)
    data = tomllib.loads(file.read_text())
    assert data["load"]["ctx"] == 8192 and data["model"]["/m/a.gguf"] == {"ctx": 1024}
    assert data["sampling"]["temperature"] == 0.9  # not changed in the app: the hand's
    assert (config.default_ctx, config.sampling.temperature) == (8192, 0.9)


def test_a_file_unreadable_at_save_time_is_kept_as_a_backup(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(FILE)
    config = load_config(file)
    file.write_text("[load\nctx = 1\n")
    config.threads = 2
    save_config(config)
    assert backup_path(file).read_text() == "[load\nctx = 1\n"
    again = load_config(file)
    assert again.problem is None and (again.threads, again.default_ctx, again.theme) == (2, 2048, "gruvbox")


def test_a_bad_value_edited_by_hand_is_reported_not_raised(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(FILE)
    config = load_config(file)
    assert config.problem is None
    file.write_text(FILE.replace("ctx = 2048", 'ctx = "big"'))
    config.threads = 2
    save_config(config)
    assert config.problem is not None and "load.ctx" in config.problem
    assert config.default_ctx == load_config(tmp_path / "none.toml").default_ctx  # the default, as at load
    assert config.threads == 2 and tomllib.loads(file.read_text())["load"]["threads"] == 2


def test_merge_rules() -> None:
    from tuillm.core.settings_file import merged

    base = {"a": 1, "b": 2, "c": 3, "t": {"x": 1, "y": 2}}
    ours = {"a": 1, "b": 20, "t": {"x": 1, "y": 20}, "new": 5}  # b and t.y changed, c removed
    theirs = {"a": 10, "b": 200, "c": 3, "t": {"x": 10, "y": 2, "z": 3}, "hand": 6}
    assert merged(base, ours, theirs) == {"a": 10, "b": 20, "t": {"x": 10, "y": 20, "z": 3}, "hand": 6, "new": 5}
    # Removed by the app but changed by hand: the hand's value stays; removed by hand and unchanged: gone.
    assert merged({"c": 3, "d": 4}, {"d": 4}, {"c": 30}) == {"c": 30}


def test_a_file_written_by_hand_after_a_start_without_one_is_kept(tmp_path: Path) -> None:
    """The app started on the defaults (no file yet); the user writes one while it runs; a save of another key keeps
    what the user wrote (the defaults are the base, not an empty file every default would override)."""
    file = tmp_path / "c.toml"
    config = load_config(file)
    assert config.problem is not None and not file.exists()  # a named file not there: said, the defaults run
    file.write_text("[load]\nctx = 8192\n[sampling]\ntop_p = 3\n")
    config.kv_type = "q8_0"
    save_config(config)
    data = tomllib.loads(file.read_text())
    assert (data["load"]["ctx"], data["load"]["kv_type"], data["sampling"]["top_p"]) == (8192, "q8_0", 3)
    assert (config.default_ctx, config.kv_type) == (8192, "q8_0")
    assert config.problem is not None and "sampling.top_p" in config.problem  # the bad value: said, its default used
    assert config.sampling.top_p == Sampling().top_p
