from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.ggufs import write_tiny_gguf
from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.models import catalog
from tuillm.core.models.catalog import discover, resolve_model
from tuillm.core.settings import Config

GIB = 1024**3


def _config(*dirs: Path) -> Config:
    return Config(model_dirs=list(dirs))


def test_demo_is_always_listed(demo_gguf: Path) -> None:
    result = discover(config=_config(), available=16 * GIB)
    demo = result.find("demo")
    assert demo is not None and demo.source == "demo"
    assert demo.path == demo_gguf
    assert demo.info.arch == "llama"
    assert demo.estimate.fit == "fits"
    assert result.problems == []


def test_folders_list_ggufs_and_hf_folders_and_report_bad_files(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "nested" / "deeper").mkdir(parents=True)
    write_tiny_gguf(models / "alpha.gguf", name="alpha")
    write_tiny_gguf(models / "nested" / "deeper" / "beta.gguf", name="beta")
    write_tiny_gguf(models / "lora.gguf", general_type="adapter")  # an adapter is not a model to chat with
    (models / "broken.gguf").write_text("not a model")
    (models / "mmproj-vision.gguf").write_text("skipped by name, never read")
    hf = models / "my-hf-model"
    hf.mkdir()
    from tests.core.models.test_metadata import _hf_folder

    _hf_folder(hf)
    result = discover(config=_config(models), available=16 * GIB)
    by_name = {e.name: e for e in result.entries}
    assert {"alpha", "beta", "my-hf-model", "demo"} <= set(by_name)
    assert "lora" not in by_name and "mmproj-vision" not in by_name
    assert by_name["my-hf-model"].info.format == "hf"
    assert by_name["beta"].source == "folder"
    assert [(Path(p.path).name, "bad magic" in p.problem) for p in result.problems] == [("broken.gguf", True)]


def test_split_gguf_is_listed_once(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "big-00001-of-00002.gguf")
    (tmp_path / "big-00002-of-00002.gguf").write_bytes(b"second part: never read on its own")
    names = [e.name for e in discover(config=_config(tmp_path), available=16 * GIB).entries]
    assert names.count("big-00001-of-00002") == 1
    assert "big-00002-of-00002" not in names


def test_hf_cache_layout(isolated_home: Path, tmp_path: Path) -> None:
    cache = Path(os.environ["HF_HUB_CACHE"])
    repo = cache / "models--SomeOrg--tiny-chat"
    snap = repo / "snapshots" / "abc123"
    blobs = repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    # The hub stores files as blobs and links them from the snapshot.
    write_tiny_gguf(blobs / "deadbeef")
    (snap / "tiny-chat.Q8_0.gguf").symlink_to(blobs / "deadbeef")
    old = repo / "snapshots" / "old000"
    old.mkdir()
    write_tiny_gguf(old / "stale.gguf")
    result = discover(config=_config(), available=16 * GIB)
    entry = result.find("SomeOrg/tiny-chat/tiny-chat.Q8_0.gguf")
    assert entry is not None and entry.source == "hf-cache"
    assert all("stale" not in e.name for e in result.entries)  # only the snapshot refs/main points at


def test_ollama_store(isolated_home: Path) -> None:
    root = Path(os.environ["OLLAMA_MODELS"])
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    digest = "sha256:" + "ab" * 32
    write_tiny_gguf(blobs / digest.replace(":", "-"))
    manifest = {"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": 1},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32, "size": 1},
    ]}
    for namespace, model, tag in (("library", "tinyllama", "latest"), ("someone", "custom", "q4")):
        path = root / "manifests" / "registry.ollama.ai" / namespace / model / tag
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(manifest))
    broken = root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    result = discover(config=_config(), available=16 * GIB)
    entry = result.find("tinyllama:latest")
    assert entry is not None and entry.source == "ollama"
    assert entry.path.name == "sha256-" + "ab" * 32
    # The second manifest names the same blob: one entry per file.
    assert result.find("someone/custom:q4") is None
    assert result.problems == []


def test_lmstudio_folders(isolated_home: Path) -> None:
    root = isolated_home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF"
    root.mkdir(parents=True)
    write_tiny_gguf(root / "Tiny-Q4_K_M.gguf")
    entry = discover(config=_config(), available=16 * GIB).find("lmstudio-community/Tiny-GGUF/Tiny-Q4_K_M")
    assert entry is not None and entry.source == "lmstudio"


def test_cache_is_used_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_gguf(tmp_path / "m.gguf", name="first")
    discover(config=_config(tmp_path), available=16 * GIB)
    assert catalog.cache_file().is_file()
    reads: list[Path] = []
    real = catalog.read_info
    monkeypatch.setattr(catalog, "read_info", lambda p: reads.append(Path(p)) or real(p))
    discover(config=_config(tmp_path), available=16 * GIB)
    assert reads == []  # every header came from the cache
    write_tiny_gguf(tmp_path / "m.gguf", name="second", n_layers=3)  # changes size and mtime
    result = discover(config=_config(tmp_path), available=16 * GIB)
    assert reads == [tmp_path / "m.gguf"]
    assert result.find("m").info.name == "second"


def test_damaged_cache_is_ignored(tmp_path: Path) -> None:
    catalog.cache_file().parent.mkdir(parents=True, exist_ok=True)
    catalog.cache_file().write_text("{garbage")
    assert discover(config=_config(), available=16 * GIB).find("demo") is not None


def test_fit_marker_follows_available_memory(demo_gguf: Path) -> None:
    assert discover(config=_config(), available=16 * GIB).find("demo").estimate.fit == "fits"
    assert discover(config=_config(), available=64 * 1024**2).find("demo").estimate.fit == "too big"


def test_resolve_model(tmp_path: Path, demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_gguf(models / "Qwen-Tiny.gguf")
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/models is a default folder
    assert resolve_model("demo") == demo_gguf
    assert resolve_model(str(models / "Qwen-Tiny.gguf")) == models / "Qwen-Tiny.gguf"
    assert resolve_model("qwen-tiny") == models / "Qwen-Tiny.gguf"  # case-insensitive
    assert resolve_model("Qwen") == models / "Qwen-Tiny.gguf"  # unique prefix
    with pytest.raises(ModelFileError, match="no model of that name"):
        resolve_model("nothing-like-this")
    with pytest.raises(TuillmError):
        resolve_model(str(tmp_path / "missing.gguf"))
    for empty in ("", "  "):  # not the current folder
        with pytest.raises(TuillmError, match=r"^no model named \(an empty name\)"):
            resolve_model(empty)


def test_a_link_back_up_lists_each_model_once(tmp_path: Path) -> None:
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "up").symlink_to("..")  # listed as loop/up/loop/up/loop/up/zeta
    write_tiny_gguf(tmp_path / "zeta.gguf", name="zeta")  # after "loop": found first through the link before
    paths = [e.path for e in discover(config=_config(tmp_path), available=16 * GIB).entries if e.source == "folder"]
    assert paths == [tmp_path / "zeta.gguf"]


def test_an_entry_that_cannot_be_looked_at_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A link to /proc/1/cwd answers EACCES to stat (not to root here: simulated), which Python 3.11's is_dir
    # raises: "Model discovery failed" at every start, the folder being saved in the settings.
    write_tiny_gguf(tmp_path / "alpha.gguf", name="alpha")
    (tmp_path / "other").mkdir()
    is_dir = Path.is_dir

    def refusing(path: Path) -> bool:
        if path.name == "other":
            raise PermissionError(13, "Permission denied", str(path))
        return is_dir(path)

    monkeypatch.setattr(Path, "is_dir", refusing)
    assert discover(config=_config(tmp_path), available=16 * GIB).find("alpha") is not None


def test_unreadable_folder_is_skipped(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    write_tiny_gguf(locked / "x.gguf")
    locked.chmod(0)
    try:
        result = discover(config=_config(tmp_path, tmp_path / "does-not-exist"), available=16 * GIB)
        assert result.find("demo") is not None
    finally:
        locked.chmod(0o755)
        shutil.rmtree(locked)


def test_the_hf_cache_is_found_as_huggingface_hub_finds_it(isolated_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    # Unexpanded, HF_HUB_CACHE=~/hf put every pull in a folder named "~" under the current one.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", "~/hf")
    assert catalog.hf_cache_dir() == isolated_home / "hf"
    monkeypatch.setenv("STORE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", "$STORE/hub")
    assert catalog.hf_cache_dir() == tmp_path / "hub"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", "~/hfhome")
    assert catalog.hf_cache_dir() == isolated_home / "hfhome" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # where `hf download` puts them then
    assert catalog.hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert catalog.hf_cache_dir() == isolated_home / ".cache" / "huggingface" / "hub"


def test_a_link_to_itself_is_reported_and_the_rest_listed(tmp_path: Path) -> None:
    # Python 3.11's resolve() raises RuntimeError for a loop of links: the whole discovery failed with it.
    write_tiny_gguf(tmp_path / "alpha.gguf", name="alpha")
    (tmp_path / "loop.gguf").symlink_to("loop.gguf")
    result = discover(config=_config(tmp_path), available=16 * GIB)
    assert result.find("alpha") is not None
    assert [(Path(p.path).name, p.problem) for p in result.problems] == [("loop.gguf",
                                                                         "Too many levels of symbolic links")]


def test_a_models_folder_that_cannot_be_asked_about_is_skipped(tmp_path: Path) -> None:
    # A name too long (or EACCES) made Python 3.11's is_dir raise: "Model discovery failed" at every start.
    write_tiny_gguf(tmp_path / "alpha.gguf", name="alpha")
    result = discover(config=_config(tmp_path / ("x" * 300), tmp_path), available=16 * GIB)
    assert result.find("alpha") is not None
