"""``pull``: choose what to download from a repository (the quant that fits, or a checkpoint), check the disk,
download each file (core.models.hub.download) and name the model as ``tuillm models`` lists it."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit, Log, ignore
from tuillm.core.models.catalog import hf_cache_dir
from tuillm.core.models.hub import api, client, download
from tuillm.core.models.hub.files import (
    PREFERRED_QUANT,
    Quant,
    RemoteFile,
    RepoListing,
    checkpoint_files,
    find_file,
)
from tuillm.core.models.hub.fit import QuantFit, quant_fits
from tuillm.core.models.memory import FITS, TIGHT
from tuillm.core.settings import Config, load_config
from tuillm.core.text import format_bytes

SPACE_MARGIN = 64 << 20  # what the cache's own small files and the file system need on top
QUANT_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,32}")


@dataclass(frozen=True)
class Choice:
    """What ``pull`` would download, and why."""

    listing: RepoListing
    files: tuple[RemoteFile, ...]
    reason: str
    fits: tuple[QuantFit, ...] = field(default=())
    chosen: QuantFit | None = None
    checkpoint: bool = False

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class PullResult:
    choice: Choice
    path: Path  # the GGUF's first file, or the checkpoint folder (a snapshot of the HF cache)
    model: str  # the name `tuillm models` lists it under


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``owner/name[:QUANT]`` → (repo, quant or None)."""
    repo, _, quant = ref.partition(":")
    if quant and not QUANT_NAME_RE.fullmatch(quant):  # ASCII: str.isalnum takes any script's letters and digits
        raise TuillmError(f"not a quant name: {quant[:40]!r} (e.g. Q4_K_M)")
    return api.check_repo(repo), (quant or None)


def _need(q: QuantFit) -> str:
    return f"needs {format_bytes(q.fit.estimate.total_bytes)} of {format_bytes(q.fit.estimate.available_bytes)}"


def pick(fits: list[QuantFit]) -> tuple[QuantFit | None, str]:
    """The quant to download: Q4_K_M when it fits (llama.cpp's default), else the largest that fits, else the
    largest that is tight; None when nothing fits."""
    fitting = [q for q in fits if q.fit.verdict == FITS]
    tight = [q for q in fits if q.fit.verdict == TIGHT]
    preferred = next((q for q in fits if q.quant.quant.upper() == PREFERRED_QUANT), None)
    if preferred is not None and preferred in fitting:
        return preferred, f"{PREFERRED_QUANT}, the usual pick (as llama.cpp's), fits: {_need(preferred)}"
    pool = fitting or tight
    if not pool:
        return None, ""
    best = max(pool, key=lambda q: q.quant.size)
    why = "the largest quant that fits" if fitting else "the largest quant that comes close (tight)"
    if preferred is not None:
        why += f"; {PREFERRED_QUANT} {preferred.fit.verdict} ({_need(preferred)})"
    return best, f"{best.quant.quant}, {why}: {_need(best)}"


def survey(listing: RepoListing, config: Config | None = None, *, available: int | None = None) -> list[QuantFit]:
    """Each quant of ``listing`` with its fit here, judged at the path it will have in the cache."""
    snapshot = download.snapshot_dir(hf_cache_dir(), listing.repo, listing.commit)
    return quant_fits(listing, config or load_config(), snapshot, available=available)


def choice_of(listing: RepoListing, fits: list[QuantFit], q: QuantFit, reason: str) -> Choice:
    """A download of the quant ``q`` chosen in a front end (the TUI asks first when it does not fit)."""
    return Choice(listing, q.quant.files, reason, tuple(fits), q)


def _one_quant(listing: RepoListing, wanted: str) -> Quant | None:
    """The model named ``wanted``; a repository holding several under that name (in folders, or in upper and lower
    case) is asked which, rather than one picked for the user."""
    found = [q for q in listing.quants if q.quant.upper() == wanted.upper()]
    if len(found) > 1:
        names = ", ".join(q.name for q in found[:5]) + (", …" if len(found) > 5 else "")
        raise TuillmError(f"{listing.repo} has {len(found)} {wanted.upper()} models ({names}); "
                          "name one with --file")
    return found[0] if found else None


QUANTS_NAMED = 24  # the quants an error names; a repository of every llama.cpp type has about that many


def choose(ref: str, *, file: str | None = None, checkpoint: bool = False, force: bool = False,
           config: Config | None = None, available: int | None = None) -> Choice:
    """What to download for ``ref``; refuses a quant that does not fit unless ``force``."""
    repo, wanted = parse_ref(ref)
    listing = api.listing(repo)  # the main branch, as `ollama pull` and llama.cpp's -hf take
    if checkpoint:
        files = checkpoint_files(listing.files)
        if not any(f.name.endswith(".safetensors") for f in files):
            raise TuillmError(f"{repo} has no safetensors weights (pickled .bin/.pt files are never downloaded)")
        return Choice(listing, files, f"checkpoint: {len(files)} files (config, tokenizer, safetensors)",
                      checkpoint=True)
    if not listing.quants:
        raise TuillmError(f"{repo} holds no GGUF model (for a safetensors checkpoint use --checkpoint)")
    fits = survey(listing, config, available=available)
    if file is not None or wanted is not None:
        q = find_file(listing.quants, file) if file else _one_quant(listing, wanted or "")
        if q is None:
            names = [x.quant for x in listing.quants]
            # A repository may list thousands (a hostile one, 20,000): the line names the first few
            have = ", ".join(names[:QUANTS_NAMED]) + (f" and {len(names) - QUANTS_NAMED} more; `tuillm pull {repo} "
                                                     "--list` shows them" if len(names) > QUANTS_NAMED else "")
            raise TuillmError(f"{repo} has no {'file ' + repr(file[:200]) if file else wanted} (quants: {have})")
        target = next(x for x in fits if x.quant == q)
        if target.fit.verdict not in (FITS, TIGHT) and not force:
            raise TuillmError(f"{q.quant} of {repo} does not fit ({_need(target)}); --force downloads it anyway")
        reason = f"{q.quant}, as asked: {target.fit.verdict}, {_need(target)}"
    else:
        picked, reason = pick(fits)
        if picked is None:
            smallest = fits[0]
            raise TuillmError(f"no quant of {repo} fits (the smallest, {smallest.quant.quant}, "
                              f"{_need(smallest)}); name one as {repo}:QUANT with --force to download it anyway")
        target = picked
    return Choice(listing, target.quant.files, reason, tuple(fits), target)


def check_space(choice: Choice, cache: Path, *, free: int | None = None) -> None:
    """Refuses when the files still to fetch (less what partial downloads hold) exceed the free space."""
    need = 0
    snapshot = download.snapshot_dir(cache, choice.listing.repo, choice.listing.commit)
    blobs = download.repo_folder(cache, choice.listing.repo) / "blobs"
    for f in choice.files:
        if (snapshot / f.name).exists():
            continue
        etag = f.sha256 or f.blob_id or ""
        part = blobs / f"{etag}{download.PARTIAL_SUFFIX}"
        need += f.size - (part.stat().st_size if etag and part.is_file() else 0)
    free = download.free_bytes(cache) if free is None else free
    if need and need + SPACE_MARGIN > free:
        raise TuillmError(f"not enough disk space in {cache}: {format_bytes(need)} to download, "
                          f"{format_bytes(free)} free")


def run(choice: Choice, emit: Emit = ignore, *, cancel: threading.Event | None = None) -> PullResult:
    cache = hf_cache_dir()
    with download.cache_errors(cache):
        check_space(choice, cache)
    listing = choice.listing
    for mm in listing.mmproj:
        emit(Log(f"{mm.name}: a vision projector (mmproj), not downloaded: tuillm does not serve images yet"))
    paths = [download.fetch_file(listing.repo, listing.commit, f, cache, emit, cancel=cancel) for f in choice.files]
    if choice.checkpoint:
        return PullResult(choice, paths[0].parent, listing.repo)
    # The catalog lists a cached GGUF as <repo>/<path in the snapshot>, a split one by its first part.
    return PullResult(choice, paths[0], f"{listing.repo}/{choice.files[0].name}")


def pull(ref: str, emit: Emit = ignore, *, file: str | None = None, checkpoint: bool = False, force: bool = False,
         cancel: threading.Event | None = None) -> PullResult:
    """``choose`` then ``run``: the whole of ``tuillm pull``."""
    client.check_online()
    return run(choose(ref, file=file, checkpoint=checkpoint, force=force), emit, cancel=cancel)
