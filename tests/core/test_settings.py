from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from tuillm.core import paths
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.models.memory import estimate, estimate_for_load, load_refusal
from tuillm.core.models.metadata import read_info
from tuillm.core.settings import (
    Config,
    ModelDefaults,
    backup_path,
    default_model_dirs,
    load_config,
    load_options_for,
    sampling_defaults,
    save_config,
)


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
    assert load_config(tmp_path).problem == f"{tmp_path}: not a regular file; using defaults"


def test_a_file_nested_past_the_parser_s_depth_is_reported(tmp_path: Path) -> None:
    # It was "unexpected error: RecursionError" at the start of every command.
    file = tmp_path / "c.toml"
    file.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    config = load_config(file)
    assert config.problem == f"{file}: nested too deeply; using defaults"
    assert config.model_dirs == default_model_dirs()


def test_every_section_is_read(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    file = tmp_path / "c.toml"
    file.write_text(
        '[load]\nctx = 8192\nn_gpu_layers = 12\nthreads = 3\nkv_type = "q8_0"\nflash_attn = true\n'
        "[sampling]\ntemperature = 0.2\ntop_k = 7\nmax_tokens = 64\n"
        '[ui]\ntheme = "nord"\n[keys]\n"models.refresh" = "f6"\n'
        f'[model."{model}"]\nctx = 1024\nkv_type = "f16"\n'
    )
    config = load_config(file)
    assert config.problem is None
    assert (config.default_ctx, config.n_gpu_layers, config.threads, config.kv_type, config.flash_attn) == (
        8192, 12, 3, "q8_0", True)
    assert (config.sampling.temperature, config.sampling.top_k, config.sampling.max_tokens) == (0.2, 7, 64)
    assert config.sampling.top_p == Sampling().top_p  # not in the file: the default
    assert config.theme == "nord" and config.keys == {"models.refresh": "f6"}
    assert config.defaults_for(model) == ModelDefaults(ctx=1024, kv_type="f16")


def test_bad_values_name_their_key_and_keep_the_default(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[load]\nctx = "big"\nkv_type = "q2"\nthreads = 4\n[sampling]\ntop_p = 3.0\n'
                    "[keys]\n\"chat.stop\" = 5\n")
    config = load_config(file)
    assert config.default_ctx == Config().default_ctx and config.kv_type == "f16"
    assert config.threads == 4  # a good value beside bad ones still applies
    assert config.sampling.top_p == Sampling().top_p and config.keys == {}
    for key in ("load.ctx", "load.kv_type", "sampling.top_p", 'keys."chat.stop"'):
        assert key in config.problem


def test_save_round_trips_and_keeps_unknown_keys(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('future_option = 1\n[load]\nctx = 2048\nmystery = "x"\n'
                    '[model."/m/a.gguf"]\nctx = 512\nnote = "mine"\n')
    config = load_config(file)
    config.threads = 2
    config.sampling = replace(config.sampling, temperature=0.0)
    config.theme = "gruvbox"
    config.keys["models.delete"] = "x"
    config.model_dirs = [tmp_path / "llms"]
    config.set_defaults_for("/m/b.gguf", ModelDefaults(n_gpu_layers=-1, flash_attn=True))
    assert save_config(config) == file
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]  # no temporary file left beside it
    data = tomllib.loads(file.read_text())
    assert data["future_option"] == 1 and data["load"]["mystery"] == "x"
    assert data["model"]["/m/a.gguf"] == {"ctx": 512, "note": "mine"}
    again = load_config(file)
    # Kept, and named: a setting this version does not read is not ignored without a word.
    assert again.problem == (f'{file}: unknown keys, not read (kept in the file): future_option, load.mystery, '
                             'model."/m/a.gguf".note')
    assert (again.default_ctx, again.threads, again.n_gpu_layers) == (2048, 2, None)
    assert again.sampling.temperature == 0.0 and again.theme == "gruvbox"
    assert again.keys == {"models.delete": "x"} and again.model_dirs == [tmp_path / "llms"]
    assert again.defaults_for("/m/b.gguf") == ModelDefaults(n_gpu_layers=-1, flash_attn=True)
    # Clearing a model's settings removes its table.
    again.set_defaults_for("/m/b.gguf", ModelDefaults())
    save_config(again)
    assert "/m/b.gguf" not in tomllib.loads(file.read_text())["model"]


def test_save_without_a_path_writes_the_xdg_file() -> None:
    config = Config()
    config.default_ctx = 1024
    save_config(config)
    assert load_config().default_ctx == 1024 and config.path == paths.config_file()


def test_load_options_layer_the_model_settings_and_the_flags(tmp_path: Path) -> None:
    config = Config(default_ctx=8192, kv_type="q8_0", threads=4)
    model = tmp_path / "m.gguf"
    config.set_defaults_for(model, ModelDefaults(ctx=1024, n_gpu_layers=0))
    assert load_options_for(config, tmp_path / "other.gguf") == LoadOptions(n_ctx=8192, kv_type="q8_0",
                                                                            n_threads=4)
    mine = load_options_for(config, model)
    assert (mine.n_ctx, mine.n_gpu_layers, mine.kv_type, mine.n_threads) == (1024, 0, "q8_0", 4)
    flagged = load_options_for(config, model, n_ctx=512, n_threads=None, flash_attn=True)
    assert (flagged.n_ctx, flagged.n_threads, flagged.flash_attn) == (512, 4, True)
    assert sampling_defaults(Config(sampling=Sampling(top_k=3)), top_k=None, max_tokens=9) == Sampling(
        top_k=3, max_tokens=9)


def test_saving_over_a_malformed_file_keeps_it_as_a_backup(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[load\nctx = 1\n")
    config = load_config(file)
    assert "line 1" in config.problem
    save_config(config)
    assert backup_path(file).read_text() == "[load\nctx = 1\n"
    assert load_config(file).problem is None


def test_load_estimate_follows_the_options(demo_gguf: Path) -> None:
    """What the Models pane marks and the Chat pane checks: the load's context, KV type, and where layers go."""
    info = read_info(demo_gguf)
    base = estimate_for_load(info, LoadOptions(n_ctx=4096), offload=False)
    assert base == estimate(info, 4096, available=base.available_bytes)
    assert estimate_for_load(info, LoadOptions(n_ctx=8192), offload=False).total_bytes > base.total_bytes
    assert estimate_for_load(info, LoadOptions(n_ctx=4096, kv_type="q8_0"), offload=False).kv_bytes < base.kv_bytes
    # Without GPU offload, asking for GPU layers changes nothing; with it, the layers leave RAM.
    assert estimate_for_load(info, LoadOptions(n_gpu_layers=10), offload=False).ram_bytes == base.ram_bytes
    assert estimate_for_load(info, LoadOptions(n_gpu_layers=None), offload=True).ram_bytes < base.ram_bytes
    tight = base.total_bytes  # just enough for 4K, not with headroom: refused only when "too big"
    assert load_refusal(info, LoadOptions(n_ctx=4096), tight, offload=False) is None
    refusal = load_refusal(info, LoadOptions(n_ctx=8192), tight, offload=False)
    assert refusal is not None and "context of 8192 tokens" in refusal


def test_values_are_checked_by_the_declarations(tmp_path: Path) -> None:
    """[load] and [sampling] are checked by core.llama.options' declarations: their words, their bounds (llama.cpp
    asserts past 512 threads; a NaN temperature samples garbage)."""
    from tuillm.core.llama.options import LOAD_OPTIONS, SAMPLING_OPTIONS
    from tuillm.core.options import option_map

    load, sampling = option_map(LOAD_OPTIONS), option_map(SAMPLING_OPTIONS)
    file = tmp_path / "c.toml"
    file.write_text("[load]\nthreads = 100000\nn_gpu_layers = -2\n[sampling]\ntop_p = 3\ntemperature = nan\n"
                    f'[model."{tmp_path / "m.gguf"}"]\nctx = 8\n')
    config = load_config(file)
    assert (config.threads, config.n_gpu_layers) == (None, None)
    assert config.sampling == Sampling() and config.defaults_for(tmp_path / "m.gguf") == ModelDefaults()
    problem = config.problem
    assert f"load.threads: must be {load['n_threads'].expected()}, not 100000" in problem
    assert f"load.n_gpu_layers: must be {load['n_gpu_layers'].expected()}" in problem
    assert f"sampling.top_p: must be {sampling['top_p'].expected()}, not 3" in problem
    assert f"sampling.temperature: must be {sampling['temperature'].expected()}, not nan" in problem
    assert f'ctx: must be {load["n_ctx"].expected()}, not 8' in problem
    # The defaults are the declarations' too.
    assert (Config().default_ctx, Config().kv_type) == (load["n_ctx"].default, load["kv_type"].default)
    # "auto" is written back for the engine's choice, and read again as None.
    config.threads, config.path = None, tmp_path / "out.toml"
    save_config(config)
    assert tomllib.loads(config.path.read_text())["load"]["threads"] == "auto"
    assert load_config(config.path).threads is None


def test_unknown_keys_are_named_with_the_key_meant(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('threads = 2\nmodles = 1\n[load]\nctxx = 4096\nctx = 2048\n[sampling]\ntemprature = 0.2\n'
                    '[ui]\ntheme = "nord"\ncolour = 1\n[model."/m/a.b.gguf"]\nctx = 512\nthread = 2\n')
    config = load_config(file)
    assert config.problem == (
        f"{file}: unknown keys, not read (kept in the file): threads (did you mean load.threads?), "
        "modles (did you mean models?), load.ctxx (did you mean load.ctx?), "
        "sampling.temprature (did you mean sampling.temperature?), ui.colour, "
        'model."/m/a.b.gguf".thread (did you mean model."/m/a.b.gguf".threads?)')
    # The keys it knows still apply.
    assert (config.default_ctx, config.theme, config.defaults_for("/m/a.b.gguf").ctx) == (2048, "nord", 512)
    many = tmp_path / "many.toml"
    many.write_text("".join(f"k{i} = {i}\n" for i in range(11)))
    assert load_config(many).problem.endswith("k6, k7 and 3 more")


def test_a_tilde_naming_no_user_is_kept_as_written(tmp_path: Path) -> None:
    # "~models" (a slip for "~/models"): Path.expanduser raised RuntimeError and the app did not start.
    file = tmp_path / "c.toml"
    file.write_text('[models]\ndirs = ["~no-such-user-tuillm/models", "~/m"]\n'
                    '[model."~no-such-user-tuillm/x.gguf"]\nctx = 2048\n')
    config = load_config(file)
    assert config.problem is None
    # Relative, as written: read from the file's folder (tests/core/test_settings_paths.py).
    assert config.model_dirs == [tmp_path / "~no-such-user-tuillm/models", Path.home() / "m"]
    assert config.defaults_for(tmp_path / "~no-such-user-tuillm/x.gguf").ctx == 2048


def test_a_model_whose_name_is_not_utf8_cannot_have_settings_of_its_own(tmp_path: Path) -> None:
    # The file is UTF-8 text: save_config raised UnicodeEncodeError on such a [model."..."] key, at every save.
    from tuillm.core.settings import model_key_problem

    bad, good = tmp_path / "bad\udcff.gguf", tmp_path / "good.gguf"
    config = Config(path=tmp_path / "c.toml")
    assert model_key_problem(good) is None and "not UTF-8" in (model_key_problem(bad) or "")
    with pytest.raises(ValueError, match="not UTF-8"):
        config.set_defaults_for(bad, ModelDefaults(ctx=2048))
    config.set_defaults_for(bad, ModelDefaults())  # clearing them needs no name in the file
    config.set_defaults_for(good, ModelDefaults(ctx=2048))
    save_config(config)
    assert load_config(config.path).defaults_for(good).ctx == 2048
