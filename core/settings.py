"""User settings: a TOML file in the XDG config folder (or the one passed with ``--config``).

A malformed file never stops the app: the defaults are used and the problem (with its line) is kept in
``Config.problem`` for the front end to show. A value of the wrong type or out of range is reported by its key
and that key's default is used; the rest of the file still applies.

The file::

    [models]
    dirs = ["~/models"]
    scan_hf_cache = true        # also scan_ollama, scan_lmstudio
    [load]
    ctx = 4096                  # also n_gpu_layers, threads ("auto" or a number), kv_type, flash_attn
    [sampling]
    temperature = 0.7           # also top_p, top_k, min_p, repeat_penalty, max_tokens
    [ui]
    theme = "textual-dark"      # [keys]: checked by the app, which knows the ids (tui.keymap)
    [keys]
    "models.refresh" = "ctrl+r,f6"   # binding id = keys
    [model."/abs/path/to/model.gguf"]
    ctx = 2048                  # any of [load]'s keys, for that model only

A relative path in it (models.dirs, a [model."..."] key) is read from the file's folder, not the current one
(``core.settings_file``); the front ends see absolute paths only, and ``save_config`` writes each path the file had
as it was written (relative, ``~``), a new one absolute.

``save_config`` writes it back atomically, keeping keys it does not know (comments are not kept); ``Config.problem``
names them all the same: a misspelt or misplaced one (``threads = 2`` above ``[load]``) would go without a word. It
merges with the file as it is then (``settings_file.merged``): a value changed by hand while the app ran is kept,
and read into the ``Config``, unless the app changed that same value.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tuillm.core import paths
from tuillm.core.files import write_atomic
from tuillm.core.llama.options import LOAD_OPTIONS, SAMPLING_OPTIONS, LoadOptions, Sampling
from tuillm.core.options import AUTO, MAX_ECHO, Option, OptionError, option_map
from tuillm.core.settings_file import (
    backup_path,
    base_folder,
    dir_entries,
    dirs_as_written,
    encoded,
    file_path,
    merge_base,
    merged,
    model_tables_as_written,
    not_read,
    read_file,
    write_target,
)
from tuillm.core.text import shown

_LOAD = option_map(LOAD_OPTIONS)


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
    # [load]; the defaults are the declarations' (core.llama.options)
    default_ctx: int = _LOAD["n_ctx"].default
    n_gpu_layers: int | None = _LOAD["n_gpu_layers"].default  # None: llama.cpp offloads what fits when it can
    threads: int | None = _LOAD["n_threads"].default  # None: the physical performance cores (hardware.default_threads)
    kv_type: str = _LOAD["kv_type"].default
    flash_attn: bool = _LOAD["flash_attn"].default
    sampling: Sampling = field(default_factory=Sampling)
    theme: str | None = None  # None: Textual's default theme
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys, as Textual's keymap takes them
    model_defaults: dict[str, ModelDefaults] = field(default_factory=dict)  # absolute path -> settings
    path: Path | None = None
    problem: str | None = None
    # The file as parsed (or last saved), each key it lacks as a save would write it: the base of the merge at save
    # time (settings_file.merged). Its unknown keys are written back; a default filled in is no change of the app's.
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def defaults_for(self, path: str | Path) -> ModelDefaults:
        return self.model_defaults.get(model_key(path), ModelDefaults())

    def set_defaults_for(self, path: str | Path, defaults: ModelDefaults) -> None:
        """A ValueError (``model_key_problem``) for a path the file cannot name: every later save would fail."""
        key = model_key(path)
        if defaults.is_empty():
            self.model_defaults.pop(key, None)
        elif (problem := model_key_problem(path)) is not None:
            raise ValueError(problem)
        else:
            self.model_defaults[key] = defaults


def model_key(path: str | Path) -> str:
    """How a model is named in [model."..."]: its absolute path (symlinks kept: the user chose that name)."""
    return str(paths.expand_user(path).absolute())


def model_key_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot have settings of its own, or None: the settings file is UTF-8 text, and a name with a
    byte that is not UTF-8 (a lone surrogate, as Python reads it) made ``save_config`` raise UnicodeEncodeError."""
    try:
        model_key(path).encode("utf-8")
    except UnicodeEncodeError:
        return f"{Path(path).name}: its name is not UTF-8, which the settings file cannot hold; rename the file"
    return None


# --- the keys of [load] and [sampling]: their declarations (core.llama.options) check them ---------------------------

# [load] key (also the ModelDefaults attribute) -> its declaration, as the file holds it (64-bit integers)
LOAD_SETTINGS: dict[str, Option] = {o.setting: replace(o, bits=64) for o in LOAD_OPTIONS if o.setting}
# [sampling] key -> its declaration (the key is the option's name, as in Sampling)
SAMPLING_SETTINGS: dict[str, Option] = {o.name: replace(o, bits=64) for o in SAMPLING_OPTIONS}
SCAN_KEYS = ("scan_hf_cache", "scan_ollama", "scan_lmstudio")
_SCAN = Option("scan", bool, True, "scan another app's models")


def config_attr(key: str) -> str:
    """The ``Config`` attribute of a [load] key: the key itself, but for ctx (``default_ctx``, as the front ends
    read it)."""
    return "default_ctx" if key == "ctx" else key


def load_config(path: str | Path | None = None) -> Config:
    file = paths.expand_user(path) if path else paths.config_file()
    config = Config(path=file)
    is_file, why = not_read(file, named=bool(path))
    if not is_file:  # a file named but not there, or the XDG file a folder: said, and the defaults run
        _read(config, {})  # the defaults are the base a save merges with: a file written meanwhile wins over them
        config.problem = f"{file}: {why}; using defaults" if why else None
        return config
    data, problem = read_file(file)
    if data is None:
        config.problem = f"{file}: {problem}; using defaults"
        return config
    _read(config, data)
    return config


def _read(config: Config, data: dict[str, Any]) -> None:
    """Sets ``config`` (its path set) from the parsed file ``data``, its problems in ``problem``, as if new."""
    fresh = Config(path=config.path, raw=data)
    problems = _apply(fresh, data, base_folder(fresh.path)) + _unknown_keys(data)
    fresh.problem = f"{fresh.path}: " + "; ".join(problems) if problems else None
    fresh.raw = merge_base(data, to_toml_data(fresh), ("models", "load", "sampling"))  # the tables with defaults
    for f in fields(fresh):  # in place: the front ends hold this Config
        setattr(config, f.name, getattr(fresh, f.name))


# The keys each table reads ([keys] and [model."..."] are tables of user-chosen names).
_KNOWN: dict[str, tuple[str, ...]] = {
    "models": ("dirs", *SCAN_KEYS), "load": tuple(LOAD_SETTINGS), "sampling": tuple(SAMPLING_SETTINGS),
    "ui": ("theme",), "keys": (), "model": (),
}


def _unknown_keys(data: dict[str, Any]) -> list[str]:
    """One message naming the keys no table reads, each with the key meant where that is plain, or none."""
    found: list[tuple[str, str, tuple[str, ...]]] = [(_named(name), _named(name), tuple(_KNOWN)) for name in data
                                                      if name not in _KNOWN]  # (shown, leaf, its table's keys)
    for table in ("models", "load", "sampling", "ui"):
        if isinstance(data.get(table), dict):
            found += [(f"{table}.{_named(key)}", _named(key), _KNOWN[table]) for key in data[table]
                      if key not in _KNOWN[table]]
    models = data.get("model")
    for model, table in (models.items() if isinstance(models, dict) else ()):
        if isinstance(table, dict):
            found += [(f'model."{_named(model)}".{_named(key)}', _named(key), tuple(LOAD_SETTINGS)) for key in table
                      if key not in LOAD_SETTINGS]
    return [f"unknown keys, not read (kept in the file): {', '.join(_meant(*key) for key in found[:8])}"
            + (f" and {len(found) - 8} more" if len(found) > 8 else "")] if found else []


def _meant(shown: str, leaf: str, siblings: tuple[str, ...]) -> str:
    """``shown`` with the key meant: the same name in another table (misplaced), or a close one beside it."""
    import difflib  # only for a file with a key that is not ours: start-up does without it

    elsewhere = [f"{table}.{leaf}" for table, keys in _KNOWN.items() if leaf in keys]
    close = difflib.get_close_matches(leaf, siblings, 1, 0.75)
    if elsewhere:
        return f"{shown} (did you mean {elsewhere[0]}?)"
    if close:
        return f"{shown} (did you mean {shown[: len(shown) - len(leaf)]}{close[0]}?)"
    return shown


def _named(name: str) -> str:
    """A name from the file as a message repeats it: control characters shown escaped, a long one cut (a
    megabyte of key name or value was echoed whole into the notification)."""
    return shown(name, MAX_ECHO)


def _table(data: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"[{name}] must be a table; using its defaults")
        return {}
    return value


def _apply(config: Config, data: dict[str, Any], base: Path) -> list[str]:
    """Sets ``config`` from the parsed file, its relative paths read from ``base`` (the file's folder); returns one
    message per bad value (whose default stays)."""
    problems: list[str] = []

    def bad(key: str, value: Any, expected: str) -> None:
        problems.append(f"{key}: must be {expected}, not {_named(repr(value))}; using the default")

    def checked(table: dict[str, Any], name: str, options: dict[str, Option]) -> dict[str, Any]:
        """The valid values of ``table``'s keys that ``options`` declares; each bad one is reported."""
        values: dict[str, Any] = {}
        for key, option in options.items():
            if key in table:
                try:
                    values[key] = option.check_field(table[key], f"{name}.{key}")
                except OptionError as exc:
                    problems.append(f"{exc}; using the default")
        return values

    models = _table(data, "models", problems)
    if (dirs := _model_dirs(models.get("dirs"), base, problems)) is not None:
        config.model_dirs = dirs
    for key, value in checked(models, "models", dict.fromkeys(SCAN_KEYS, _SCAN)).items():
        setattr(config, key, value)

    for key, value in checked(_table(data, "load", problems), "load", LOAD_SETTINGS).items():
        setattr(config, config_attr(key), value)

    config.sampling = replace(config.sampling, **checked(_table(data, "sampling", problems), "sampling",
                                                         SAMPLING_SETTINGS))

    ui = _table(data, "ui", problems)
    if "theme" in ui:
        if isinstance(ui["theme"], str) and ui["theme"].strip() and ui["theme"].isprintable():
            config.theme = ui["theme"].strip()
        else:
            bad("ui.theme", ui["theme"], "a theme name")

    keys = _table(data, "keys", problems)
    for binding_id, value in keys.items():
        if isinstance(value, str) and value.strip():
            config.keys[binding_id] = value.strip()
        else:
            bad(f'keys."{_named(binding_id)}"', value, 'a key list such as "ctrl+r,f6"')

    names: dict[str, str] = {}  # each model -> the first name the file gave it
    for model, table in _table(data, "model", problems).items():
        if not isinstance(table, dict):
            problems.append(f'[model."{_named(model)}"] must be a table; ignored')
            continue
        key = model_key(file_path(model, base))
        if (first := names.setdefault(key, model)) != model:  # "a.gguf" and "./a.gguf": the later wins, key by key
            problems.append(f'[model."{_named(model)}"] and [model."{_named(first)}"] name one model: read as one '
                            "(a key both set: the later value) and saved as one")
        # Keys other than [load]'s are kept in raw and written back as they were.
        defaults = replace(config.model_defaults.get(key, ModelDefaults()),
                           **checked(table, f'model."{_named(model)}"', LOAD_SETTINGS))
        if not defaults.is_empty():
            config.model_defaults[key] = defaults
    return problems


def _model_dirs(dirs: Any, base: Path, problems: list[str]) -> list[Path] | None:
    """The folders of models.dirs, or None (the defaults). An entry no folder can have as its name is skipped
    (``settings_file.dir_entries``): one number among the paths took the user's folders away."""
    if (entries := dir_entries(dirs)) is None:
        if dirs is not None:
            problems.append("models.dirs must be a list of paths; using the default folders")
        return None
    good, bad = entries
    if bad:
        problems.append(f"models.dirs: entry {bad[0][0]} ({_named(repr(bad[0][1]))}) is no folder name; skipped"
                        + (f", and {len(bad) - 1} more" if len(bad) > 1 else ""))
    return [file_path(d, base) for d in good]


# --- writing ----------------------------------------------------------------------------------------------------------


def _load_value(value: Any, key: str) -> Any:
    """How a [load] value is written: "auto" for the engine's choice (TOML has no None)."""
    return AUTO if value is None and LOAD_SETTINGS[key].auto else value


def to_toml_data(config: Config) -> dict[str, Any]:
    """The file's content for ``config``: its parsed original with our keys replaced, unknown keys kept."""
    data = copy.deepcopy(config.raw)

    def section(name: str) -> dict[str, Any]:
        if not isinstance(data.get(name), dict):
            data[name] = {}
        return data[name]

    base = base_folder(config.path)  # where the file read (raw) has its relative names from
    models = section("models")
    models["dirs"] = dirs_as_written(config.model_dirs, models.get("dirs"), base)
    for key in SCAN_KEYS:
        models[key] = getattr(config, key)
    load = section("load")
    for key in LOAD_SETTINGS:
        load[key] = _load_value(getattr(config, config_attr(key)), key)
    sampling = section("sampling")
    for key in SAMPLING_SETTINGS:
        sampling[key] = getattr(config.sampling, key)
    ui = section("ui")
    if config.theme:
        ui["theme"] = config.theme
    else:
        ui.pop("theme", None)
    data["keys"] = dict(config.keys)
    ours = {model: {key: value for key in LOAD_SETTINGS if (value := getattr(defaults, key)) is not None}
            for model, defaults in config.model_defaults.items()}
    if per_model := model_tables_as_written(ours, data.get("model"), base, LOAD_SETTINGS):
        data["model"] = per_model
    else:
        data.pop("model", None)
    for name in ("keys", "ui"):
        if not data[name]:
            del data[name]
    return data


def save_config(config: Config) -> Path:
    """Writes ``config`` to its file (the XDG one if it has none): a temporary file renamed over the old one.

    What the file says now is merged in (``settings_file.merged``): a value edited by hand (another editor, another
    tuillm) since the file was read or last saved is kept unless the app changed that value too, and ``config`` is
    then read again from what was written, so the app has the hand edits as well (a bad one in ``problem``, its
    default used, as ``load_config`` does). A file that is not valid TOML (the app ran on defaults) has nothing to
    merge: it is first moved to ``<name>.bak``, so the user's text is not lost to the rewrite.
    """
    import tomli_w

    file = config.path or paths.config_file()
    target = write_target(file)  # a symlink's target: the link stays
    theirs = read_file(target)[0] if target.is_file() else None
    data = to_toml_data(config) if theirs is None else merged(config.raw, to_toml_data(config), theirs)
    content = encoded(tomli_w.dumps(data))
    target.parent.mkdir(parents=True, exist_ok=True)
    if theirs is None and target.is_file():
        os.replace(target, backup_path(target))
    write_atomic(target, content)  # with the file's mode: a config holding a key stays private
    config.path = file
    _read(config, data)
    return file


# --- what the front ends load with ----------------------------------------------------------------------------------


def load_options_for(config: Config, path: str | Path, **overrides: Any) -> LoadOptions:
    """How to load ``path``: [load], then the model's own [model."path"] settings, then ``overrides`` (the CLI's
    flags; a None override means "not given")."""
    mine = config.defaults_for(path)
    values: dict[str, Any] = {}
    for key, option in LOAD_SETTINGS.items():
        own = getattr(mine, key)
        values[option.name] = getattr(config, config_attr(key)) if own is None else own
    values.update((k, v) for k, v in overrides.items() if v is not None)
    return LoadOptions(**values)


def sampling_defaults(config: Config, **overrides: Any) -> Sampling:
    """[sampling], with ``overrides`` (None: not given) on top."""
    return replace(config.sampling, **{k: v for k, v in overrides.items() if v is not None})
