"""User settings: a TOML file in the XDG config folder (or the one passed with ``--config``).

A malformed file never stops the app: the defaults are used and the problem (with its line) is kept in
``Config.problem`` for the front end to show.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tuillm.core import paths


def default_model_dirs() -> list[Path]:
    return [paths.data_dir() / "models", Path.home() / "models"]


@dataclass
class Config:
    model_dirs: list[Path] = field(default_factory=default_model_dirs)
    # Whether to scan the other apps' stores (HF hub cache, Ollama, LM Studio).
    scan_hf_cache: bool = True
    scan_ollama: bool = True
    scan_lmstudio: bool = True
    default_ctx: int = 4096
    path: Path | None = None
    problem: str | None = None


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
    models = data.get("models", {})
    dirs = models.get("dirs")
    if isinstance(dirs, list) and all(isinstance(d, str) for d in dirs):
        config.model_dirs = [Path(d).expanduser() for d in dirs]
    elif dirs is not None:
        config.problem = f"{file}: models.dirs must be a list of paths; using the default folders"
    for key in ("scan_hf_cache", "scan_ollama", "scan_lmstudio"):
        if isinstance(models.get(key), bool):
            setattr(config, key, models[key])
    ctx = data.get("load", {}).get("ctx")
    if isinstance(ctx, int) and ctx > 0:
        config.default_ctx = ctx
    return config
