"""A local Hugging Face Hub for tests: the endpoints huggingface_hub 2.4 calls, answering as huggingface.co does.

- ``GET /api/models?search=&filter=&sort=&limit=&expand=`` (list_models): a JSON list of the matching repos with
  the ``expand`` fields asked for;
- ``GET /api/models/{repo}[/revision/{rev}]?blobs=true`` (model_info): ``sha``, ``gated`` and ``siblings`` with
  ``size``, ``blobId`` and ``lfs {sha256, size, pointerSize}``; a gated repo's page is public (200);
- ``HEAD|GET /{repo}/resolve/{rev}/{path}`` (hf_hub_url / get_hf_file_metadata / hf_hub_download): an LFS file is
  a 302 to the CDN with ``X-Repo-Commit``, ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``; a small file is
  served directly with ``ETag`` = git's blob sha1;
- ``HEAD|GET /cdn/{sha256}`` (the LFS storage): the bytes, with ``Range`` (206 + ``Content-Range``);
- errors as the Hub sends them: a missing repo is 401 ``X-Error-Code: RepoNotFound``; a gated repo's file is 401
  ``GatedRepo`` without a token and 403 with a token that has no access; a missing file is 404 ``EntryNotFound``.

Faults for tests: ``drops[name]`` (bytes to send before cutting the connection, one per GET of that file),
``corrupt`` (file names served with one byte flipped), ``slow`` (a pause between chunks). ``requests`` logs
what came in.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")


@dataclass
class FakeFile:
    name: str
    path: Path  # the bytes live on disk (sparse files keep large quants cheap)
    lfs: bool = False
    _sha256: str = ""
    _git: str = ""

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def sha256(self) -> str:
        if not self._sha256:
            h = hashlib.sha256()
            with self.path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        return self._sha256

    def git_oid(self) -> str:
        if not self._git:
            data = self.path.read_bytes() if not self.lfs else self.pointer().encode()
            self._git = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        return self._git

    def pointer(self) -> str:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256()}\nsize {self.size}\n"


@dataclass
class FakeRepo:
    repo: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    gated: bool = False
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-15T10:00:00.000Z"

    @property
    def sha(self) -> str:
        listing = "|".join(f"{n}:{f.git_oid()}" for n, f in sorted(self.files.items()))
        return hashlib.sha1(listing.encode()).hexdigest()

    def add(self, name: str, path: Path) -> FakeFile:
        f = FakeFile(name, path, lfs=name.endswith(LFS_SUFFIXES))
        self.files[name] = f
        return f


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, FakeRepo] = {}
        self.token = "hf_test_token_granted"
        self.drops: dict[str, list[int]] = {}
        self.corrupt: set[str] = set()
        self.slow: dict[str, float] = {}  # seconds to wait between 64 KiB chunks of that file
        self.fail: dict[str, int] = {}  # files whose storage GETs answer this HTTP status
        self.ignore_range: set[str] = set()  # files served whole (200) even when a Range is asked, as some CDNs do
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.server_address[1]}"

    def add_repo(self, repo: str, **kw: object) -> FakeRepo:
        r = FakeRepo(repo, **kw)  # type: ignore[arg-type]
        self.repos[repo] = r
        return r

    def by_sha(self, sha: str) -> FakeFile | None:
        return next((f for r in self.repos.values() for f in r.files.values() if f.lfs and f.sha256() == sha), None)

    def served(self, method: str, prefix: str) -> list[dict[str, str]]:
        return [h for m, p, h in self.requests if m == method and p.startswith(prefix)]


REPO_PATH = r"(?P<repo>[^/]+/[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    # --- plumbing -------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message})

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    def _route(self) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.server.lock:
            self.server.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        if path == "/":
            return self._send(200, b"<html>hub</html>", content_type="text/html")
        if path == "/api/models":
            return self._list(query)
        m = re.fullmatch(rf"/api/models/{REPO_PATH}(?:/revision/(?P<rev>.+))?", path)
        if m:
            return self._info(m.group("repo"), m.group("rev") or "main", query)
        m = re.fullmatch(rf"/{REPO_PATH}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
        if m:
            return self._resolve(m.group("repo"), m.group("rev"), m.group("file"))
        m = re.fullmatch(r"/cdn/(?P<sha>[0-9a-f]{64})", path)
        if m:
            f = self.server.by_sha(m.group("sha"))
            return self._bytes(f) if f else self._send(404, b"NoSuchKey", content_type="text/plain")
        self._send(404, b"Not Found", content_type="text/plain")

    do_GET = do_HEAD = _route  # noqa: N815 - BaseHTTPRequestHandler's naming

    # --- the API -------------------------------------------------------------------------------------------
    def _summary(self, r: FakeRepo, expand: list[str]) -> dict:
        full = {"downloads": r.downloads, "likes": r.likes, "lastModified": r.last_modified,
                "gated": "manual" if r.gated else False, "private": False,
                "tags": ["gguf"] if any(n.endswith(".gguf") for n in r.files) else ["safetensors"],
                "siblings": [{"rfilename": n} for n in sorted(r.files)]}
        return {"_id": r.sha[:24], "id": r.repo, **{k: v for k, v in full.items() if k in expand}}

    def _list(self, query: dict[str, list[str]]) -> None:
        search = (query.get("search") or [""])[0].lower()
        tags = query.get("filter") or []
        expand = query.get("expand") or query.get("expand[]") or ["downloads", "likes", "lastModified", "tags"]
        limit = int((query.get("limit") or ["1000"])[0])
        hits = [r for r in self.server.repos.values() if search in r.repo.lower()
                and all(t in self._summary(r, ["tags"])["tags"] for t in tags)]
        hits.sort(key=lambda r: -r.downloads)
        self._send(200, json.dumps([self._summary(r, expand) for r in hits[:limit]]).encode())

    def _info(self, repo: str, rev: str, query: dict[str, list[str]]) -> None:
        r = self.server.repos.get(repo)
        if r is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if rev not in ("main", r.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        blobs = (query.get("blobs") or [""])[0].lower() == "true"
        siblings = []
        for name, f in sorted(r.files.items()):
            s: dict = {"rfilename": name}
            if blobs:
                s |= {"blobId": f.git_oid(), "size": len(f.pointer()) if f.lfs else f.size}
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256(), "size": f.size, "pointerSize": len(f.pointer())}
            siblings.append(s)
        body = {**self._summary(r, ["downloads", "likes", "lastModified", "gated", "private", "tags"]),
                "modelId": r.repo, "sha": r.sha, "disabled": False, "siblings": siblings,
                "createdAt": "2025-06-01T00:00:00.000Z"}
        self._send(200, json.dumps(body).encode())

    def _resolve(self, repo: str, rev: str, name: str) -> None:
        r = self.server.repos.get(repo)
        if r is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if r.gated and self._token() != self.server.token:
            if self._token() is None:
                return self._error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access "
                                   "to it and be authenticated to access it. Please log in.")
            return self._error(403, "GatedRepo", f"Access to model {repo} is restricted and you are not in the "
                               f"authorized list. Visit https://huggingface.co/{repo} to ask for access.")
        if rev not in ("main", r.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        f = r.files.get(name)
        if f is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        common = {"X-Repo-Commit": r.sha, "Accept-Ranges": "bytes", "Vary": "Origin, Accept"}
        if f.lfs:
            # Another host name for the same loopback server: the CDN is not the Hub, so huggingface_hub's HEAD
            # stops at this redirect and reads the file's metadata from it, as it does on huggingface.co.
            location = f"{self.server.cdn_url}/cdn/{f.sha256()}"
            body = f"Found. Redirecting to {location}".encode()
            return self._send(302, body, {**common, "Location": location, "ETag": f'"{f.git_oid()}"',
                                          "X-Linked-Etag": f'"{f.sha256()}"', "X-Linked-Size": str(f.size)},
                              content_type="text/plain; charset=utf-8")
        self._bytes(f, {**common, "ETag": f'"{f.git_oid()}"'})

    # --- bytes ---------------------------------------------------------------------------------------------
    def _bytes(self, f: FakeFile, extra: dict[str, str] | None = None) -> None:
        probe = self.headers.get("Range", "").startswith("bytes=0-2097151")  # the header probe still works
        if self.command == "GET" and f.name in self.server.fail and not probe:
            return self._send(self.server.fail[f.name], b"<Error>Service Unavailable</Error>",
                              content_type="application/xml")
        size = f.size
        start, end = 0, size - 1
        status = 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if f.name in self.server.ignore_range:
            rng = None
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{f.sha256() if f.lfs else f.git_oid()}"', **(extra or {})}
        if rng:
            start, end = int(rng.group(1)), min(int(rng.group(2) or size - 1), size - 1)
            if start >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = None
        if self.command == "GET":
            with self.server.lock:
                queue = self.server.drops.get(f.name)
                cut = queue.pop(0) if queue else None
        self._stream(f, start, length, cut)

    def _stream(self, f: FakeFile, start: int, length: int, cut: int | None) -> None:
        sent = 0
        with f.path.open("rb") as data:
            data.seek(start)
            while sent < length:
                chunk = data.read(min(1 << 16, length - sent))
                if f.name in self.server.corrupt and start + sent <= f.size // 2 < start + sent + len(chunk):
                    i = f.size // 2 - start - sent
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
                if cut is not None and sent + len(chunk) >= cut:
                    self.wfile.write(chunk[: max(cut - sent, 0)])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-body
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                if f.name in self.server.slow:
                    time.sleep(self.server.slow[f.name])


# --- fixtures ------------------------------------------------------------------------------------------------------

DEMO_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
SPLIT_REPO = "tuillm-test/Tiny-Split-GGUF"
CHECKPOINT_REPO = "tuillm-test/Tiny-Checkpoint"
GATED_REPO = "meta-test/Gated-GGUF"
PAD = 4 << 20


def _padded_copy(src: Path, dst: Path, extra: int) -> Path:
    """``src`` followed by ``extra`` zero bytes (sparse): a larger "quant" whose header is the demo's."""
    with src.open("rb") as i, dst.open("wb") as o:
        while chunk := i.read(1 << 20):
            o.write(chunk)
        o.truncate(src.stat().st_size + extra)
    return dst


def _safetensors(path: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    return path


def build_hub(root: Path, demo: Path) -> FakeHub:
    """The repositories the tests pull: the demo GGUF in three "quants" with an mmproj file, a split GGUF, a
    safetensors checkpoint (with a pickle that must never be fetched), and a gated repo."""
    from tests.ggufs import write_tiny_gguf

    hub = FakeHub()
    r = hub.add_repo(DEMO_REPO, downloads=5000, likes=40)
    r.add("SmolLM2-135M-Instruct-Q2_K.gguf", demo)
    r.add("SmolLM2-135M-Instruct-Q4_K_M.gguf", _padded_copy(demo, root / "q4km.gguf", PAD))
    r.add("SmolLM2-135M-Instruct-Q8_0.gguf", _padded_copy(demo, root / "q8.gguf", 40 * PAD))
    write_tiny_gguf(root / "mmproj.gguf")
    r.add("mmproj-SmolLM2-135M-f16.gguf", root / "mmproj.gguf")
    (root / "README.md").write_text("# SmolLM2 GGUF\n")
    r.add("README.md", root / "README.md")
    s = hub.add_repo(SPLIT_REPO, downloads=30, likes=1)
    for i in (1, 2):
        write_tiny_gguf(root / f"split{i}.gguf", n_layers=2 + i)
        s.add(f"tiny-Q8_0-0000{i}-of-00002.gguf", root / f"split{i}.gguf")
    c = hub.add_repo(CHECKPOINT_REPO, downloads=10)
    (root / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (root / "pytorch_model.bin").write_bytes(b"PK\3\4 a pickle")
    for name in ("config.json", "tokenizer.json", "pytorch_model.bin"):
        c.add(name, root / name)
    c.add("model.safetensors", _safetensors(root / "model.safetensors"))
    g = hub.add_repo(GATED_REPO, gated=True, downloads=900)
    write_tiny_gguf(root / "gated.gguf")
    g.add("gated-Q4_K_M.gguf", root / "gated.gguf")
    hub.thread.start()
    return hub


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory, demo_gguf: Path) -> Iterator[FakeHub]:
    hub = build_hub(tmp_path_factory.mktemp("hub"), demo_gguf)
    yield hub
    hub.shutdown()
    hub.server_close()


@pytest.fixture
def hub(hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The session's fake Hub, its faults and log reset, with HF_ENDPOINT pointing at it and no token set."""
    hub_server.drops.clear()
    hub_server.corrupt.clear()
    hub_server.slow.clear()
    hub_server.ignore_range.clear()
    hub_server.fail.clear()
    hub_server.requests.clear()
    from huggingface_hub import constants

    # The core sets huggingface_hub's offline flag from the environment when it goes online; put it back after.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hub_server
