"""Downloading one file into the Hugging Face cache, resumable across runs and checked against the Hub's checksum.

huggingface_hub (2.4) writes to a temporary name unique to each process and deletes it when a download fails, and
it does not verify what it wrote. So tuillm keeps its own partial file, ``blobs/<etag>.incomplete`` (the name
older huggingface_hub versions resumed from; 2.4 writes ``<etag>.<random>.incomplete`` and never touches ours),
appends to it with huggingface_hub's ``http_get`` (a Range request from the partial's length, never more bytes than
the listing gives the file, the token only to the Hub's own host), verifies the sha256 of LFS files (git's blob
sha1 for small files), and renames it to ``blobs/<etag>``. Then it writes what ``hf_hub_download`` writes around a
blob, the relative snapshot symlink and ``refs/<revision>``, so the layout is exactly huggingface_hub's and every
tool sharing the cache sees the file. (``hf_hub_download`` itself would ask the Hub again, and join the blob's path
from that second answer's ETag unchecked: a mirror answering ``../../x`` there wrote a file outside the cache.)

Cancelled (Ctrl+C, SIGTERM, the TUI's cancel): the partial stays for the next run to resume; nothing exists under
the final names. A checksum mismatch deletes the partial (its bytes cannot be trusted).

Two pulls of one file (two terminals, the TUI and the CLI, or `hf download`) take turns: a blob is downloaded under
the lock huggingface_hub itself takes for it, ``.locks/models--<repo>/<etag>.lock``, and the second, once it has
the lock, finds the blob there.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from tuillm.core.errors import TuillmError, first_line
from tuillm.core.events import Cancelled, Emit, Log, Progress
from tuillm.core.models.hub import client
from tuillm.core.models.hub.files import RemoteFile
from tuillm.core.text import format_bytes

CHUNK = 1 << 20
LOCK_POLL_S = 0.25  # how often a pull waiting for another's lock checks its cancel flag
ETAG_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
PARTIAL_SUFFIX = ".incomplete"
CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by tuillm for the Hugging Face cache.\n"
                "# For information about cache directory tags, see: https://bford.info/cachedir/\n")


class _TooLong(Exception):
    """The server sent more bytes than the listing gives the file."""


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def snapshot_dir(cache: Path, repo: str, commit: str) -> Path:
    return repo_folder(cache, repo) / "snapshots" / commit


def free_bytes(path: Path) -> int:
    """Free space on the file system that holds ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def partial_path(cache: Path, repo: str, etag: str) -> Path:
    return repo_folder(cache, repo) / "blobs" / f"{etag}{PARTIAL_SUFFIX}"


def lock_path(cache: Path, repo: str, etag: str) -> Path:
    """Where huggingface_hub locks a blob while it downloads it (the same file, so its tools and ours take turns)."""
    return cache / ".locks" / repo_folder(cache, repo).name / f"{etag}.lock"


@contextmanager
def blob_lock(cache: Path, repo: str, etag: str, name: str, emit: Emit,
              cancel: threading.Event | None) -> Iterator[None]:
    """Held while the blob ``etag`` is downloaded; waits (cancellable, said once) while another download holds it."""
    from filelock import FileLock, Timeout

    path = lock_path(cache, repo, etag)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, mode=0o664)  # group-writable, as huggingface_hub makes it for a shared cache
    said = False
    while True:
        try:
            lock.acquire(timeout=LOCK_POLL_S)
            break
        except NotImplementedError:  # no flock on this file system (some NFS): as before there was a lock
            yield
            return
        except Timeout:
            if cancel is not None and cancel.is_set():
                raise Cancelled() from None
            if not said:
                said = True
                emit(Log(f"{name}: another download of this file is running; waiting for it to finish"))
    try:
        yield
    finally:
        lock.release()


def _hasher(f: RemoteFile, size: int) -> tuple[hashlib._Hash, str]:
    """The hash the Hub gives for ``f`` (sha256 for LFS files, git's blob sha1 for the others), primed, and its
    expected hex digest."""
    if f.sha256:
        return hashlib.sha256(), f.sha256.lower()
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"blob {size}\0".encode())
    return h, (f.blob_id or "").lower()


def _feed(h: hashlib._Hash, path: Path, limit: int | None = None) -> None:
    left = limit
    with path.open("rb") as data:
        while (left is None or left > 0) and (chunk := data.read(CHUNK if left is None else min(CHUNK, left))):
            h.update(chunk)
            left = None if left is None else left - len(chunk)


def bytes_here(cache: Path, repo: str, commit: str, files: tuple[RemoteFile, ...]) -> int:
    """How much of ``files`` is on disk already: whole files in the snapshot, plus the parts kept for a resume."""
    here = 0
    for f in files:
        etag = f.sha256 or f.blob_id or ""
        part = partial_path(cache, repo, etag)
        if (snapshot_dir(cache, repo, commit) / f.name).exists():
            here += f.size
        elif ETAG_RE.fullmatch(etag) and part.is_file():
            here += min(part.stat().st_size, f.size)
    return here


def digest(path: Path, f: RemoteFile) -> tuple[str, str]:
    """(what the Hub says, what the file holds), read from the file."""
    h, want = _hasher(f, path.stat().st_size)
    _feed(h, path)
    return want, h.hexdigest()


class _HashingFile:
    """The partial file as http_get writes it, hashed on the way (on a thread of its own: hashlib lets go of the GIL,
    so the hash keeps pace with the network) so the check needs no second read of the file. A seek or truncate
    (http_get starting over when a server ignores the Range) voids the running hash. Nothing is written past
    ``size``: http_get reads a body to its end, and a server's may never end."""

    def __init__(self, out: BinaryIO, h: hashlib._Hash, size: int) -> None:
        self.out, self.h, self.valid, self.size = out, h, True, size
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._hash, name="tuillm-sha256", daemon=True)
        self.thread.start()

    def _hash(self) -> None:
        while (data := self.queue.get()) is not None:
            self.h.update(data)

    def write(self, data: bytes) -> int:
        if self.out.tell() + len(data) > self.size:
            raise _TooLong()
        n = self.out.write(data)
        self.queue.put(bytes(data))
        return n

    def tell(self) -> int:
        return self.out.tell()

    def seek(self, *args: int) -> int:
        self.valid = False
        return self.out.seek(*args)

    def truncate(self, *args: int) -> int:
        self.valid = False
        return self.out.truncate(*args)

    def finish(self) -> str | None:
        """The hex digest of all that was written (None: voided); the hashing thread ends here in every case."""
        self.queue.put(None)
        self.thread.join()
        return self.h.hexdigest() if self.valid else None


class _Meter:
    """Counts bytes for the progress line (MB/s, ETA) and stops the transfer when cancelled."""

    def __init__(self, name: str, start: int, total: int, emit: Emit, cancel: threading.Event | None) -> None:
        self.name, self.done, self.total, self.emit, self.cancel = name, start, total, emit, cancel
        self.t0, self.start, self.last = time.monotonic(), start, 0.0

    def add(self, n: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.1 or self.done >= self.total:
            self.last = now
            self.emit(Progress("download", self.done, self.total, self.message(now)))

    def message(self, now: float) -> str:
        rate = (self.done - self.start) / max(now - self.t0, 1e-6)
        eta = (self.total - self.done) / rate if rate > 0 else 0
        left = f"ETA {int(eta) // 60}:{int(eta) % 60:02d}" if rate > 0 and self.done < self.total else ""
        return (f"{self.name} {format_bytes(self.done)} / {format_bytes(self.total)} "
                f"{rate / 1e6:.1f} MB/s {left}").rstrip()


def _bar_class(meter: _Meter) -> type:
    """A huggingface_hub tqdm that draws nothing and feeds ``meter`` (http_get reports through its bar class)."""
    from huggingface_hub.utils import tqdm

    class Bar(tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            meter.add(int(n or 0))
            return None

    return Bar


def _transport_errors() -> tuple[type[Exception], ...]:
    import httpx2

    return (httpx2.TransportError,)


def _why(exc: BaseException) -> str:
    """A failed transfer in a few words: the status of an HTTP error (its URL is a long signed one), else the
    error's first line."""
    from huggingface_hub.errors import HfHubHTTPError  # an OSError too

    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return first_line(exc)


def _headers(url: str) -> dict[str, str]:
    """The Hub's headers for a GET of ``url``: with the token only when ``url`` is on the Hub's own origin (the
    storage a file redirects to is another host, as huggingface_hub's own downloads take it)."""
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=client.token())
    here, there = urlsplit(client.endpoint()), urlsplit(url)
    if (here.scheme, here.hostname, here.port) != (there.scheme, there.hostname, there.port):
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    return headers


def _transfer(url: str, part: Path, f: RemoteFile, meter: _Meter) -> str | None:
    """Appends the rest of ``f`` to ``part``; the hex digest of the whole file, or None when it must be read again."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import http_get

    resume = part.stat().st_size if part.exists() else 0
    if resume > f.size:
        resume = 0  # longer than the file: not ours to trust
    if not resume and f.size > constants.MAX_HTTP_DOWNLOAD_SIZE:  # http_get's own refusal, in our words
        raise client.HubError(f"{f.name} is larger than {format_bytes(constants.MAX_HTTP_DOWNLOAD_SIZE)}: the Hub "
                              "serves such files through Xet only (pip install hf_xet, then use `hf download`)")
    h, _want = _hasher(f, f.size)
    if resume:
        _feed(h, part, resume)  # the kept part, once; the rest is hashed as it arrives
    with part.open("r+b" if part.exists() else "wb") as out:
        out.truncate(resume)
        out.seek(resume)
        writer = _HashingFile(out, h, f.size)
        try:
            http_get(url, writer, resume_size=resume, headers=_headers(url),  # type: ignore[arg-type]
                     expected_size=f.size, displayed_filename=f.name, tqdm_class=_bar_class(meter))
        finally:
            out.flush()  # no fsync: after a crash a damaged part fails the checksum and is fetched again
            got = writer.finish()
    return got


def _metadata(repo: str, commit: str, f: RemoteFile) -> tuple[str, str]:
    """(where the file's bytes are, its ETag), from the Hub's answer to a HEAD of the file at ``commit``."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, f.name, revision=commit, endpoint=client.endpoint())
    meta = client.call(repo, lambda: get_hf_file_metadata(url, token=client.token(), timeout=client.API_TIMEOUT_S),
                       f"the request for {f.name}")
    # The ETag names the blob file: only a hex digest, and the one the listing gave, is joined to a path.
    if not meta.location or not meta.etag or not ETAG_RE.fullmatch(meta.etag):
        raise client.HubError(f"{repo}/{f.name}: the Hub gave no usable ETag for the file")
    if meta.etag != (f.sha256 or f.blob_id):
        raise client.HubError(f"{repo}/{f.name}: the file changed on the Hub while pulling; run again")
    return meta.location, meta.etag


def _download(repo: str, f: RemoteFile, location: str, part: Path, emit: Emit, cancel: threading.Event | None) -> None:
    """``f`` into ``part``, whole and checked; a HubError (the partial kept to resume, or deleted when untrusted)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    meter = _Meter(f.name, min(start, f.size), f.size, emit, cancel)
    with client.hub_errors(repo):  # an HTTP error of the storage (403, 5xx): one line too
        try:
            got = _transfer(location, part, f, meter)
        except _TooLong:
            part.unlink(missing_ok=True)
            raise client.HubError(f"{repo}/{f.name}: the Hub sent more than the {format_bytes(f.size)} the file "
                                  "has; the download was deleted, run again") from None
        except (OSError, *_transport_errors()) as exc:  # the partial stays: the next run resumes from it
            kept = part.stat().st_size if part.exists() else 0
            raise client.HubError(f"{repo}/{f.name}: download interrupted at {format_bytes(kept)} of "
                                  f"{format_bytes(f.size)} ({_why(exc)}); run the same command again "
                                  "to resume") from None
    want = (f.sha256 or f.blob_id or "").lower()
    if got is None:
        emit(Progress("verify", 0, 1, f.name))
        want, got = digest(part, f)
    if want != got:
        part.unlink(missing_ok=True)
        raise client.HubError(f"{repo}/{f.name}: checksum mismatch (the Hub says {want[:12]}…, the download "
                              f"is {got[:12]}…); the download was deleted, run again")


def _replace_with(final: Path, make: Callable[[Path], None]) -> None:
    """``final`` made whole under a temporary name beside it (``make(tmp)``), then renamed over it."""
    tmp = final.with_name(f".tuillm-{uuid.uuid4().hex[:12]}.tmp")
    try:
        make(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def _place(cache: Path, repo: str, commit: str, revision: str, name: str, etag: str) -> Path:
    """What hf_hub_download writes around a blob already there: the snapshot's relative symlink to it (a copy where
    the file system has no symlinks), ``refs/<revision>`` naming the commit, and the cache's CACHEDIR.TAG."""
    folder = repo_folder(cache, repo)
    blob, final = folder / "blobs" / etag, snapshot_dir(cache, repo, commit) / name
    final.parent.mkdir(parents=True, exist_ok=True)

    def link(tmp: Path) -> None:
        try:
            os.symlink(os.path.relpath(blob, final.parent), tmp)
        except OSError:  # no symlinks here (as huggingface_hub does then, the snapshot holds the bytes)
            shutil.copyfile(blob, tmp)

    _replace_with(final, link)
    ref = folder / "refs" / revision
    if revision != commit and (not ref.is_file() or ref.read_text() != commit):
        ref.parent.mkdir(parents=True, exist_ok=True)
        _replace_with(ref, lambda tmp: tmp.write_text(commit))
    tag = cache / "CACHEDIR.TAG"
    if not tag.exists():
        with suppress(OSError):  # a courtesy to backup tools, as huggingface_hub writes it: never a failure
            tag.write_text(CACHEDIR_TAG)
    return final


@contextmanager
def cache_errors(cache: Path) -> Iterator[None]:
    """A file-system failure in the cache (a read-only folder, a file or FIFO where a folder should be, a full
    disk) as one line."""
    try:
        yield
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise TuillmError(f"cannot write to the Hugging Face cache {cache} "
                          f"({exc.strerror or first_line(exc)}{where})") from None


def fetch_file(repo: str, commit: str, f: RemoteFile, cache: Path, emit: Emit, *, revision: str = "main",
               cancel: threading.Event | None = None) -> Path:
    """``f`` of ``repo`` at ``commit`` in the cache (downloaded, resumed or already there); its snapshot path."""
    with cache_errors(cache):
        final = snapshot_dir(cache, repo, commit) / f.name
        if final.exists():
            return final
        location, etag = _metadata(repo, commit, f)
        blob = repo_folder(cache, repo) / "blobs" / etag
        with blob_lock(cache, repo, etag, f.name, emit, cancel):
            if not blob.exists():  # looked at under the lock: another pull may have just finished it
                part = partial_path(cache, repo, etag)
                _download(repo, f, location, part, emit, cancel)
                os.chmod(part, 0o644)
                os.replace(part, blob)
            return _place(cache, repo, commit, revision, f.name, etag)
