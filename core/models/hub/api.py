"""Searching the Hub and listing one repository, through ``huggingface_hub.HfApi``."""

from __future__ import annotations

import json
import re
from collections import Counter
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
MAX_FILE_BYTES = 1 << 50  # 1 PiB: far past any file the Hub holds; a larger size is no size (and overflows a C long)
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
    """``owner/name`` as the Hub spells repository ids; anything else is refused before a request is made (the
    whole text: ``re.match``'s ``$`` would let a trailing newline through)."""
    if not pullable(repo):
        raise TuillmError(f"not a Hub repository id (owner/name): {repo[:200]!r}")
    return repo


def pullable(repo: str) -> bool:
    """Whether ``check_repo`` takes ``repo`` (search leaves out what ``pull`` would refuse)."""
    return bool(REPO_RE.fullmatch(repo)) and ".." not in repo and not repo.endswith((".", "-"))


def check_revision(revision: str) -> str:
    if not REVISION_RE.fullmatch(revision) or ".." in revision:
        raise TuillmError(f"not a revision name: {revision[:200]!r}")
    return revision


def safe_name(name: str) -> bool:
    """A path inside a repository that can be a path inside the snapshot folder and be shown as it is: relative,
    no empty, ``.`` or ``..`` part, no backslash, only printable characters (no control characters, C1 escapes,
    bidirectional overrides or zero-width marks), each part short enough for a file system (255 bytes)."""
    parts = name.split("/")
    return (0 < len(name) <= 512 and name.isprintable() and "\\" not in name
            and all(p not in ("", ".", "..") and len(p.encode("utf-8", "surrogatepass")) <= 255 for p in parts))


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
    if not pullable(item["id"]):
        return None
    names = [s["rfilename"] for s in siblings if s["rfilename"].lower().endswith(".gguf")]
    quants = sorted({q for q in (quant_of(n) for n in names if "mmproj" not in n.lower()) if q})
    modified = item.get("lastModified")
    day = modified[:10] if isinstance(modified, str) and DATE_RE.match(modified) else ""
    return SearchHit(item["id"], _count(item, "downloads", what), _count(item, "likes", what), day, tuple(quants),
                     bool(item.get("gated")))


def _search_answer(text: str, limit: int, what: str) -> object:
    """The Hub's JSON answer to the search, read as huggingface_hub's ``list_models`` asks: one request that gives
    up after API_TIMEOUT_S (list_models takes no timeout, and would retry a stalled server five times), its body
    bounded (client.get_bounded)."""
    params = {"search": text, "filter": "gguf", "sort": "downloads", "limit": limit, "expand": SEARCH_EXPAND}
    return json.loads(client.get_bounded(f"{client.endpoint()}/api/models", what=what, params=params))


def search(text: str, limit: int = SEARCH_LIMIT.default) -> list[SearchHit]:
    """GGUF repositories matching ``text``, most downloaded first."""
    text = text.strip()
    if not text or len(text) > MAX_SEARCH_CHARS or not text.isprintable():
        raise TuillmError(f"search text must be 1 to {MAX_SEARCH_CHARS} printable characters")
    client.probe()
    what = f"the search for {text!r}"
    return client.call(text, lambda: hits(_search_answer(text, limit, what), limit, what), what)


def hits(answer: object, limit: int, what: str) -> list[SearchHit]:
    """The repositories of a search answer (JSON, as parsed), at most ``limit``; a HubError when it is not one."""
    if not isinstance(answer, list):
        raise client.unexpected(what, "not a list of repositories")
    return [hit for item in answer[:limit] if (hit := _hit(item, what)) is not None]


def _hex_or_none(value: object, pattern: re.Pattern[str]) -> bool:
    return value is None or (isinstance(value, str) and pattern.fullmatch(value) is not None)


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
    if (type(size) is not int or not 0 <= size <= MAX_FILE_BYTES or not _hex_or_none(sha256, SHA256_RE)
            or not _hex_or_none(blob_id, SHA1_RE)):
        raise client.unexpected(what, f"the size or checksum of {name[:100]!r}")
    return RemoteFile(name, size, sha256, blob_id)


def _model_info(repo: str, revision: str, what: str):  # noqa: ANN202 - huggingface_hub's ModelInfo, lazily
    """``HfApi.model_info(repo, revision=revision, files_metadata=True)``, its answer read bounded."""
    from urllib.parse import quote

    from huggingface_hub.hf_api import ModelInfo

    url = f"{client.endpoint()}/api/models/{repo}/revision/{quote(revision, safe='')}"
    return ModelInfo(**json.loads(client.get_bounded(url, what=what, params={"blobs": True})))


def listing(repo: str, revision: str = "main") -> RepoListing:
    """The files of ``repo`` at ``revision`` with sizes and checksums (one request: model_info with blobs)."""
    check_repo(repo)
    check_revision(revision)
    client.check_online()
    what = f"the file list of {repo}"

    def fetch() -> tuple:
        info = _model_info(repo, revision, what)
        files = tuple(f for s in info.siblings or [] if (f := _remote_file(s, what)) is not None)
        twice = [name for name, n in Counter(f.name for f in files).items() if n > 1]
        if twice:  # one path is one file: the Hub never lists it twice (a split part twice would pass as whole)
            raise client.unexpected(what, f"it names {twice[0][:100]!r} twice")
        return info, files

    info, files = client.call(repo, fetch, what)
    if not info.sha:
        raise client.HubError(f"{repo}: the Hub did not name the commit")
    if not isinstance(info.sha, str) or not SHA1_RE.fullmatch(info.sha):  # it names the snapshot folder
        raise client.unexpected(what, "the commit is not a git hash")
    quants, mmproj = group_quants(files)
    return RepoListing(repo, info.sha, files, bool(info.gated), quants, mmproj)
