"""Searching the Hub and listing one repository, through ``huggingface_hub.HfApi``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuillm.core.errors import TuillmError
from tuillm.core.models.hub import client
from tuillm.core.models.hub.files import RemoteFile, RepoListing, group_quants, quant_of
from tuillm.core.options import Option

REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
MAX_SEARCH_CHARS = 200
# `tuillm search --limit`: declared once, checked where it enters (tui.cli.options).
SEARCH_LIMIT = Option("limit", int, 20, "at most this many repositories", lo=1, hi=100)


@dataclass(frozen=True)
class SearchHit:
    repo: str
    downloads: int
    likes: int
    last_modified: str  # ISO date, "" when the Hub did not say
    quants: tuple[str, ...]
    gated: bool


def check_repo(repo: str) -> str:
    """``owner/name`` as the Hub spells repository ids; anything else is refused before a request is made."""
    if not REPO_RE.match(repo) or ".." in repo or repo.endswith((".", "-")):
        raise TuillmError(f"not a Hub repository id (owner/name): {repo!r}")
    return repo


def check_revision(revision: str) -> str:
    if not REVISION_RE.match(revision) or ".." in revision:
        raise TuillmError(f"not a revision name: {revision!r}")
    return revision


def safe_name(name: str) -> bool:
    parts = name.split("/")
    return (0 < len(name) <= 512 and not name.startswith("/") and "\\" not in name
            and all(p not in ("", ".", "..") for p in parts) and not any(ord(c) < 32 or c == "\x7f" for c in name))


def _api():  # noqa: ANN202 - huggingface_hub's HfApi, imported lazily
    from huggingface_hub import HfApi

    return HfApi(endpoint=client.endpoint(), token=client.token())


def search(text: str, limit: int = SEARCH_LIMIT.default) -> list[SearchHit]:
    """GGUF repositories matching ``text``, most downloaded first."""
    text = text.strip()
    if not text or len(text) > MAX_SEARCH_CHARS or any(ord(c) < 32 for c in text):
        raise TuillmError(f"search text must be 1 to {MAX_SEARCH_CHARS} printable characters")
    client.probe()
    expand = ["downloads", "likes", "lastModified", "siblings", "gated"]

    def fetch() -> list:
        return list(_api().list_models(search=text, filter="gguf", sort="downloads", limit=limit,
                                       expand=expand))  # type: ignore[arg-type]

    hits = []
    for m in client.call(text, fetch):
        names = [s.rfilename for s in (m.siblings or []) if s.rfilename.lower().endswith(".gguf")]
        quants = sorted({q for q in (quant_of(n) for n in names if "mmproj" not in n.lower()) if q})
        modified = m.last_modified.date().isoformat() if m.last_modified else ""
        hits.append(SearchHit(m.id, int(m.downloads or 0), int(m.likes or 0), modified, tuple(quants),
                              bool(m.gated)))
    return hits


def listing(repo: str, revision: str = "main") -> RepoListing:
    """The files of ``repo`` at ``revision`` with sizes and checksums (one request: model_info with blobs)."""
    check_repo(repo)
    check_revision(revision)
    client.check_online()

    def fetch():  # noqa: ANN202
        return _api().model_info(repo, revision=revision, files_metadata=True, timeout=client.API_TIMEOUT_S)

    info = client.call(repo, fetch)
    files = []
    for s in info.siblings or []:
        if not safe_name(s.rfilename):
            continue  # a name that would leave the snapshot folder (or carries control characters): never fetched
        size = s.lfs.size if s.lfs else (s.size or 0)
        files.append(RemoteFile(s.rfilename, int(size), s.lfs.sha256 if s.lfs else None, s.blob_id))
    files_t = tuple(files)
    quants, mmproj = group_quants(files_t)
    if not info.sha:
        raise client.HubError(f"{repo}: the Hub did not name the commit")
    return RepoListing(repo, info.sha, files_t, bool(info.gated), quants, mmproj)
