"""User settings: a TOML file in the XDG config folder (or the one passed with ``--config``).

A malformed file never stops the app: the defaults are used and the problem (with its line) is kept in
``Config.problem`` for the front end to show. A value of the wrong type or out of range is reported by its key
and that key's default is used; the rest of the file still applies.

The file::

    [models]
    dirs = ["~/models"]
    scan_hf_cache = true        # also scan_ollama, scan_lmstudio
    [load]
    ctx = 4096
    n_gpu_layers = "auto"       # or a number; -1: all layers
    threads = "auto"            # or a number
    kv_type = "f16"             # f16 | q8_0 | q4_0
    flash_attn = false
    [sampling]
    temperature = 0.7           # also top_p, top_k, min_p, repeat_penalty, max_tokens
    [ui]
    theme = "textual-dark"
    [keys]
    "models.refresh" = "ctrl+r,f6"   # binding id = keys
    [model."/abs/path/to/model.gguf"]
    ctx = 2048                  # any of [load]'s keys, for that model only

``save_config`` writes it back atomically, keeping keys it does not know (comments are not kept).
"""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tuillm.core import paths
from tuillm.core.llama.options import KV_TYPES, LoadOptions, Sampling

AUTO = "auto"


def default_model_dirs() -> list[Path]:
    return [paths.data_dir() / "models", Path.home() / "models"]


@dataclass(frozen=True)
class ModelDefaults:
    """Load settings of one model; None: the [load] value applies."""

    ctx: int | None = None
    n_gpu_layers: int | None = None
    threads: int | None = None
    kv_type: str | None = None
    flash_attn: bool | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass
class Config:
    model_dirs: list[Path] = field(default_factory=default_model_dirs)
    # Whether to scan the other apps' stores (HF hub cache, Ollama, LM Studio).
    scan_hf_cache: bool = True
    scan_ollama: bool = True
    scan_lmstudio: bool = True
    default_ctx: int = 4096
    n_gpu_layers: int | None = None  # None: llama.cpp offloads what fits when it can (see LoadOptions)
    threads: int | None = None  # None: llama.cpp's default
    kv_type: str = "f16"
    flash_attn: bool = False
    sampling: Sampling = field(default_factory=Sampling)
    theme: str | None = None  # None: Textual's default theme
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys, as Textual's keymap takes them
    model_defaults: dict[str, ModelDefaults] = field(default_factory=dict)  # absolute path -> settings
    path: Path | None = None
    problem: str | None = None
    # The file as parsed, so a save keeps the keys this version does not know.
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def defaults_for(self, path: str | Path) -> ModelDefaults:
        return self.model_defaults.get(model_key(path), ModelDefaults())

    def set_defaults_for(self, path: str | Path, defaults: ModelDefaults) -> None:
        key = model_key(path)
        if defaults.is_empty():
            self.model_defaults.pop(key, None)
        else:
            self.model_defaults[key] = defaults


def model_key(path: str | Path) -> str:
    """How a model is named in [model."..."]: its absolute path (symlinks kept: the user chose that name)."""
    return str(Path(path).expanduser().absolute())


# --- validation: each returns the value, or raises ValueError with what is expected ---------------------------------


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("a whole number above 0")
    return value


def _ctx(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 16:
        raise ValueError("a whole number of tokens, at least 16")
    return value


def _gpu_layers(value: Any) -> int | None:
    if value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError('"auto", -1 (all layers) or a number of layers')
    return value


def _threads(value: Any) -> int | None:
    if value == AUTO:
        return None
    try:
        return _positive_int(value)
    except ValueError:
        raise ValueError('"auto" or a number of threads above 0') from None


def _kv_type(value: Any) -> str:
    if value not in KV_TYPES:
        raise ValueError(f"one of {', '.join(KV_TYPES)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _number(lo: float, hi: float | None = None) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None
                                                                                              and value > hi):
            raise ValueError(f"a number from {lo:g}" + (f" to {hi:g}" if hi is not None else " up"))
        return float(value)
    return check


def _whole(lo: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"a whole number, at least {lo}")
        return value
    return check


# [load] key (also the ModelDefaults attribute) -> (Config attribute, check)
LOAD_KEYS: dict[str, tuple[str, Any]] = {
    "ctx": ("default_ctx", _ctx),
    "n_gpu_layers": ("n_gpu_layers", _gpu_layers),
    "threads": ("threads", _threads),
    "kv_type": ("kv_type", _kv_type),
    "flash_attn": ("flash_attn", _bool),
}
LOAD_CHECKS: dict[str, Any] = {key: check for key, (_attr, check) in LOAD_KEYS.items()}
SAMPLING_KEYS: dict[str, Any] = {
    "temperature": _number(0.0, 5.0),
    "top_p": _number(0.0, 1.0),
    "top_k": _whole(0),
    "min_p": _number(0.0, 1.0),
    "repeat_penalty": _number(0.0, 5.0),
    "max_tokens": _whole(1),
}
SCAN_KEYS = ("scan_hf_cache", "scan_ollama", "scan_lmstudio")


def check_value(section: str, key: str, value: Any) -> Any:
    """The validated value of ``section.key`` (the settings screen checks its fields with this too)."""
    if section == "load":
        return LOAD_CHECKS[key](value)
    if section == "sampling":
        return SAMPLING_KEYS[key](value)
    raise KeyError(f"{section}.{key}")


def load_config(path: str | Path | None = None) -> Config:
    file = Path(path).expanduser() if path else paths.config_file()
    config = Config(path=file)
    if not file.is_file():
        if path:  # the user named a file that is not there: say so, but run with defaults
            config.problem = f"{file}: no such config file; using defaults"
        return config
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        config.problem = f"{file}: cannot read ({exc.__class__.__name__}); using defaults"
        return config
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        config.problem = f"{file}: {exc}; using defaults"
        return config
    config.raw = data
    problems = _apply(config, data)
    if problems:
        config.problem = f"{file}: " + "; ".join(problems)
    return config


def _table(data: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"[{name}] must be a table; using its defaults")
        return {}
    return value


def _apply(config: Config, data: dict[str, Any]) -> list[str]:
    """Sets ``config`` from the parsed file; returns one message per bad value (whose default stays)."""
    problems: list[str] = []

    def bad(key: str, value: Any, expected: str) -> None:
        problems.append(f"{key} = {value!r} is not {expected}; using the default")

    def checked(table: dict[str, Any], name: str, checks: dict[str, Any]) -> dict[str, Any]:
        """The valid values of ``table``'s keys that ``checks`` knows; each bad one is reported."""
        values: dict[str, Any] = {}
        for key, check in checks.items():
            if key in table:
                try:
                    values[key] = check(table[key])
                except ValueError as exc:
                    bad(f"{name}.{key}", table[key], str(exc))
        return values

    models = _table(data, "models", problems)
    dirs = models.get("dirs")
    if isinstance(dirs, list) and all(isinstance(d, str) for d in dirs):
        config.model_dirs = [Path(d).expanduser() for d in dirs]
    elif dirs is not None:
        problems.append("models.dirs must be a list of paths; using the default folders")
    for key, value in checked(models, "models", dict.fromkeys(SCAN_KEYS, _bool)).items():
        setattr(config, key, value)

    for key, value in checked(_table(data, "load", problems), "load", LOAD_CHECKS).items():
        setattr(config, LOAD_KEYS[key][0], value)

    config.sampling = replace(config.sampling, **checked(_table(data, "sampling", problems), "sampling",
                                                         SAMPLING_KEYS))

    ui = _table(data, "ui", problems)
    if "theme" in ui:
        if isinstance(ui["theme"], str) and ui["theme"].strip():
            config.theme = ui["theme"].strip()
        else:
            bad("ui.theme", ui["theme"], "a theme name")

    keys = _table(data, "keys", problems)
    for binding_id, value in keys.items():
        if isinstance(value, str) and value.strip():
            config.keys[binding_id] = value.strip()
        else:
            bad(f'keys."{binding_id}"', value, 'a key list such as "ctrl+r,f6"')

    for model, table in _table(data, "model", problems).items():
        if not isinstance(table, dict):
            problems.append(f'[model."{model}"] must be a table; ignored')
            continue
        # Keys other than [load]'s are kept in raw and written back as they were.
        defaults = ModelDefaults(**checked(table, f'model."{model}"', LOAD_CHECKS))
        if not defaults.is_empty():
            config.model_defaults[model_key(model)] = defaults
    return problems


# --- writing ----------------------------------------------------------------------------------------------------------


def _load_value(attr_value: Any, key: str) -> Any:
    if attr_value is None and key in ("n_gpu_layers", "threads"):
        return AUTO
    return attr_value


def to_toml_data(config: Config) -> dict[str, Any]:
    """The file's content for ``config``: its parsed original with our keys replaced, unknown keys kept."""
    data = copy.deepcopy(config.raw)

    def section(name: str) -> dict[str, Any]:
        if not isinstance(data.get(name), dict):
            data[name] = {}
        return data[name]

    models = section("models")
    models["dirs"] = [str(d) for d in config.model_dirs]
    for key in SCAN_KEYS:
        models[key] = getattr(config, key)
    load = section("load")
    for key, (attr, _check) in LOAD_KEYS.items():
        load[key] = _load_value(getattr(config, attr), key)
    sampling = section("sampling")
    for key in SAMPLING_KEYS:
        sampling[key] = getattr(config.sampling, key)
    ui = section("ui")
    if config.theme:
        ui["theme"] = config.theme
    else:
        ui.pop("theme", None)
    data["keys"] = dict(config.keys)
    old_models = data.get("model") if isinstance(data.get("model"), dict) else {}
    per_model: dict[str, Any] = {}
    for model, defaults in config.model_defaults.items():
        # Keep what the user wrote in that table beyond our keys.
        old = next((t for name, t in old_models.items() if model_key(name) == model and isinstance(t, dict)), {})
        table = {k: v for k, v in old.items() if k not in LOAD_KEYS}
        for key in LOAD_KEYS:
            value = getattr(defaults, key)
            if value is not None:
                table[key] = value
        per_model[model] = table
    if per_model:
        data["model"] = per_model
    else:
        data.pop("model", None)
    for name in ("keys", "ui"):
        if not data[name]:
            del data[name]
    return data


def save_config(config: Config) -> Path:
    """Writes ``config`` to its file (the XDG one if it has none): a temporary file renamed over the old one.

    A file that is not valid TOML (the app ran on defaults) is first moved to ``<name>.bak``, so the user's text
    is not lost to the rewrite.
    """
    import tomli_w

    file = config.path or paths.config_file()
    data = to_toml_data(config)
    text = tomli_w.dumps(data)
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.is_file():
        try:
            tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            os.replace(file, backup_path(file))
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    config.path = file
    config.raw = data
    return file


def backup_path(file: Path) -> Path:
    return file.with_name(file.name + ".bak")


# --- what the front ends load with ----------------------------------------------------------------------------------


def load_options_for(config: Config, path: str | Path, **overrides: Any) -> LoadOptions:
    """How to load ``path``: [load], then the model's own [model."path"] settings, then ``overrides`` (the CLI's
    flags; a None override means "not given")."""
    mine = config.defaults_for(path)

    def pick(model_value: Any, global_value: Any) -> Any:
        return global_value if model_value is None else model_value

    options = LoadOptions(
        n_ctx=pick(mine.ctx, config.default_ctx),
        n_gpu_layers=pick(mine.n_gpu_layers, config.n_gpu_layers),
        n_threads=pick(mine.threads, config.threads),
        kv_type=pick(mine.kv_type, config.kv_type),
        flash_attn=pick(mine.flash_attn, config.flash_attn),
    )
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(options, **given)


def sampling_defaults(config: Config, **overrides: Any) -> Sampling:
    """[sampling], with ``overrides`` (None: not given) on top."""
    return replace(config.sampling, **{k: v for k, v in overrides.items() if v is not None})
