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
SEARCH_EXPAND = ["downloads", "likes", "lastModified", "siblings", "gated"]
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
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


def _count(item: dict, key: str, what: str) -> int:
    value = item.get(key)
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise client.unexpected(what, f"{key} is not a count")
    return value


def _hit(item: object, what: str) -> SearchHit | None:
    """One repository of a search answer; None for an id that ``pull`` would refuse (it could not be pulled)."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise client.unexpected(what, "a repository without an id")
    siblings = item.get("siblings") or []
    if not isinstance(siblings, list) or not all(isinstance(s, dict) and isinstance(s.get("rfilename"), str)
                                                 for s in siblings):
        raise client.unexpected(what, f"the file list of {item['id'][:100]!r}")
    if not REPO_RE.match(item["id"]):
        return None
    names = [s["rfilename"] for s in siblings if s["rfilename"].lower().endswith(".gguf")]
    quants = sorted({q for q in (quant_of(n) for n in names if "mmproj" not in n.lower()) if q})
    modified = item.get("lastModified")
    day = modified[:10] if isinstance(modified, str) and DATE_RE.match(modified) else ""
    return SearchHit(item["id"], _count(item, "downloads", what), _count(item, "likes", what), day, tuple(quants),
                     bool(item.get("gated")))


def _search_answer(text: str, limit: int) -> object:
    """The Hub's JSON answer to the search, read as huggingface_hub's ``list_models`` asks: one request that gives
    up after API_TIMEOUT_S (list_models takes no timeout, and would retry a stalled server five times)."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    params = {"search": text, "filter": "gguf", "sort": "downloads", "limit": limit, "expand": SEARCH_EXPAND}
    r = get_session().get(f"{client.endpoint()}/api/models", params=params,
                          headers=build_hf_headers(token=client.token()), timeout=client.API_TIMEOUT_S)
    hf_raise_for_status(r)
    return r.json()


def search(text: str, limit: int = SEARCH_LIMIT.default) -> list[SearchHit]:
    """GGUF repositories matching ``text``, most downloaded first."""
    text = text.strip()
    if not text or len(text) > MAX_SEARCH_CHARS or any(ord(c) < 32 for c in text):
        raise TuillmError(f"search text must be 1 to {MAX_SEARCH_CHARS} printable characters")
    client.probe()
    what = f"the search for {text!r}"
    return client.call(text, lambda: hits(_search_answer(text, limit), limit, what), what)


def hits(answer: object, limit: int, what: str) -> list[SearchHit]:
    """The repositories of a search answer (JSON, as parsed), at most ``limit``; a HubError when it is not one."""
    if not isinstance(answer, list):
        raise client.unexpected(what, "not a list of repositories")
    return [hit for item in answer[:limit] if (hit := _hit(item, what)) is not None]


def _hex_or_none(value: object, pattern: re.Pattern[str]) -> bool:
    return value is None or (isinstance(value, str) and pattern.match(value) is not None)


def _remote_file(s: object, what: str) -> RemoteFile | None:
    """One file of a listing (huggingface_hub's RepoSibling); None for a name that is never fetched."""
    name, size, lfs, blob_id = s.rfilename, s.size, s.lfs, s.blob_id  # type: ignore[attr-defined]
    if not isinstance(name, str):
        raise client.unexpected(what, "a file without a name")
    if not safe_name(name):
        return None  # a name that would leave the snapshot folder (or carries control characters): never fetched
    sha256 = lfs.sha256 if lfs else None
    size = lfs.size if lfs else (size or 0)
    # The checksums name files of the cache (blobs/<etag>) and the sizes go into sums: hex digests and counts only.
    if (type(size) is not int or size < 0 or not _hex_or_none(sha256, SHA256_RE)
            or not _hex_or_none(blob_id, SHA1_RE)):
        raise client.unexpected(what, f"the size or checksum of {name[:100]!r}")
    return RemoteFile(name, size, sha256, blob_id)


def listing(repo: str, revision: str = "main") -> RepoListing:
    """The files of ``repo`` at ``revision`` with sizes and checksums (one request: model_info with blobs)."""
    check_repo(repo)
    check_revision(revision)
    client.check_online()
    what = f"the file list of {repo}"

    def fetch() -> tuple:
        info = _api().model_info(repo, revision=revision, files_metadata=True, timeout=client.API_TIMEOUT_S)
        files = tuple(f for s in info.siblings or [] if (f := _remote_file(s, what)) is not None)
        return info, files

    info, files = client.call(repo, fetch, what)
    if not info.sha:
        raise client.HubError(f"{repo}: the Hub did not name the commit")
    if not isinstance(info.sha, str) or not SHA1_RE.match(info.sha):  # it names the snapshot folder
        raise client.unexpected(what, "the commit is not a git hash")
    quants, mmproj = group_quants(files)
    return RepoListing(repo, info.sha, files, bool(info.gated), quants, mmproj)
