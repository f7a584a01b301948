"""``pull`` and ``search`` against a mirror that answers downloads, redirects and API calls with hostile bytes, and
hostile references: each ends in one line, bounded, with nothing written outside the cache (mirror.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.core.models.hub.mirror import Mirror
from tests.hub_server import DEMO_REPO, SPLIT_REPO, FakeHub, FakeRepo, _Handler
from tuillm.core.errors import TuillmError
from tuillm.core.models.catalog import hf_cache_dir
from tuillm.core.models.hub import api, client, download, pull
from tuillm.core.models.hub.client import HubError
from tuillm.core.text import format_bytes

Q2 = "SmolLM2-135M-Instruct-Q2_K.gguf"
PART1 = "tiny-Q8_0-00001-of-00002.gguf"
SEARCH = "/api/models"
ENDLESS_CAP = 256 << 20  # what an "endless" answer sends at most, so a client that reads on ends the test


def cdn_path(hub: FakeHub, repo: str, name: str) -> str:
    return f"/cdn/{hub.repos[repo].files[name].sha256()}"


class Sent:
    """How many bytes an endless answer sent before the client stopped reading (known once the server sees it)."""

    def __init__(self) -> None:
        self.n, self.done = 0, threading.Event()

    def total(self) -> int:
        assert self.done.wait(60), "the server is still sending"  # a bound so a broken client fails, not hangs
        return self.n


def endless(sent: Sent, head: bytes = b"", status: int = 200, pause: float = 0.0) -> Callable[[_Handler], None]:
    """An answer with no length that goes on (``head``, then zeros) until the client stops reading."""

    def answer(h: _Handler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            h.wfile.write(head)
            sent.n = len(head)
            while sent.n < ENDLESS_CAP:
                h.wfile.write(b" " * 65536 if pause else b"\0" * 65536)
                h.wfile.flush()
                sent.n += 65536
                time.sleep(pause)
        except OSError:  # the client hung up: what the test wants
            pass
        sent.done.set()

    return answer


def downloads_but_not_probes(answer: Callable[[_Handler], None]) -> Callable[[_Handler], None]:
    """``answer`` for the download's GET; the fit's header probe (a Range from 0) is the fake Hub's."""
    return lambda h: h._route() if h.headers.get("Range", "").startswith("bytes=0-") else answer(h)


def test_the_token_never_goes_to_the_storage_host(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_only_for_the_hub")
    pull.run(pull.choose(f"{DEMO_REPO}:Q2_K"))
    heads, gets = hub.served("HEAD", f"/{DEMO_REPO}/"), hub.served("GET", "/cdn/")
    assert heads and all(h.get("authorization") == "Bearer hf_only_for_the_hub" for h in heads)
    # The file's GET goes to the storage (another host, as on huggingface.co): no token there.
    assert gets and all("authorization" not in h for h in gets)


def test_an_endless_download_stops_at_the_files_size_and_is_deleted(mirror: Mirror) -> None:
    sent = Sent()
    mirror.routes[cdn_path(mirror.hub, SPLIT_REPO, PART1)] = downloads_but_not_probes(endless(sent))
    size = format_bytes(mirror.hub.repos[SPLIT_REPO].files[PART1].size)
    with pytest.raises(HubError) as err:
        pull.pull(SPLIT_REPO)
    assert str(err.value) == (f"{SPLIT_REPO}/{PART1}: the Hub sent more than the {size} the file has; "
                              "the download was deleted, run again")
    assert sent.total() < ENDLESS_CAP
    assert [p for p in download.repo_folder(hf_cache_dir(), SPLIT_REPO).rglob("*") if p.is_file()] == []


def test_a_second_answer_naming_another_blob_writes_nothing_outside_the_cache(mirror: Mirror, tmp_path: Path) -> None:
    # huggingface_hub's hf_hub_download asks the Hub again and joins the blob path from that answer's ETag as it is.
    hub = mirror.hub
    f = hub.repos[DEMO_REPO].files[Q2]
    outside = tmp_path / "outside"
    escape = "../" * 40 + str(outside).lstrip("/")

    def head(h: _Handler) -> None:
        if h.command != "HEAD":
            return h._route()
        return h._send(302, b"", {"Location": f"{hub.cdn_url}/cdn/{f.sha256()}", "ETag": '"x"',
                                  "X-Repo-Commit": hub.repos[DEMO_REPO].sha, "X-Linked-Etag": f'"{escape}"',
                                  "X-Linked-Size": str(f.size)})

    mirror.routes[f"/{DEMO_REPO}/resolve/main/{Q2}"] = head  # the listing's commit is asked, never "main"
    result = pull.pull(f"{DEMO_REPO}:Q2_K")
    assert not outside.exists() and not outside.with_name("outside.lock").exists()
    folder = download.repo_folder(hf_cache_dir(), DEMO_REPO)
    assert result.path.resolve() == folder / "blobs" / f.sha256()
    assert (folder / "refs" / "main").read_text() == hub.repos[DEMO_REPO].sha
    assert not hub.served("HEAD", f"/{DEMO_REPO}/resolve/main/")


def test_the_header_probe_reads_only_its_bytes_of_a_server_ignoring_the_range(mirror: Mirror) -> None:
    hub = mirror.hub
    f = hub.repos[SPLIT_REPO].files[PART1]
    sent = Sent()
    mirror.routes[cdn_path(hub, SPLIT_REPO, PART1)] = endless(sent, head=f.path.read_bytes())
    choice = pull.choose(SPLIT_REPO)  # the header comes from the first bytes; the rest is never read
    assert choice.chosen is not None and choice.chosen.fit.estimate.total_bytes > 0
    assert sent.total() < ENDLESS_CAP


CALLS = {"search": (SEARCH, "the search for 'qwen'", "qwen", lambda: api.search("qwen")),
         "listing": ("/api/models/a/b/revision/main", "the file list of a/b", "a/b", lambda: api.listing("a/b"))}


@pytest.mark.parametrize("call", CALLS)
def test_an_endless_api_answer_is_one_line(mirror: Mirror, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    monkeypatch.setattr(client, "MAX_ANSWER_BYTES", 1 << 20)  # 32 MiB, scaled down for the test
    path, what, _, ask = CALLS[call]
    sent = Sent()
    mirror.routes[path] = endless(sent, head=b"[")
    with pytest.raises(HubError) as err:
        ask()
    assert str(err.value) == f"{mirror.url}: the Hub's answer to {what} is not what was expected (longer than 1 MiB)"
    assert sent.total() < ENDLESS_CAP


@pytest.mark.parametrize("call", CALLS)
def test_an_error_with_an_endless_body_is_one_line(mirror: Mirror, call: str) -> None:
    path, _, name, ask = CALLS[call]
    sent = Sent()
    mirror.routes[path] = endless(sent, head=b"{", status=500)
    with pytest.raises(HubError) as err:
        ask()
    assert str(err.value) == f"{name}: the Hub answered HTTP 500"
    assert sent.total() < ENDLESS_CAP


def test_an_answer_that_trickles_is_given_up(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each byte comes within the read timeout, so only a bound on the whole answer ends it.
    monkeypatch.setattr(client, "ANSWER_DEADLINE_S", 0.5)
    monkeypatch.setattr(client, "MIN_RATE", 1 << 40)
    sent = Sent()
    mirror.routes[SEARCH] = endless(sent, head=b"[", pause=0.05)
    with pytest.raises(HubError, match=f"^{mirror.url}: the Hub's answer to the search for 'qwen' did not end "
                       r"within \d+ s$"):
        api.search("qwen")


def test_a_size_past_the_file_system_is_one_line(mirror: Mirror, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    import tempfile

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))  # where the sparse header file cannot be made
    with pytest.raises(HubError, match=f"^{SPLIT_REPO}/{PART1}: cannot judge its header here \\(Not a directory\\)$"):
        pull.choose(SPLIT_REPO)


@pytest.mark.parametrize("ref", [f"{DEMO_REPO}:Q４_K_M", f"{DEMO_REPO}:ＱＱ", f"{DEMO_REPO}:" + "Q" * 5000,
                                 f"{DEMO_REPO}\n", "a/b\n:Q4_K_M"])
def test_hostile_references_are_refused_before_any_request(hub: FakeHub, ref: str) -> None:
    with pytest.raises(TuillmError) as err:
        pull.pull(ref)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)
    assert hub.requests == []


@pytest.mark.parametrize("text", ["\x9b2J", "a\u202eb", "a\x7fb", "\u200b"])
def test_search_text_that_cannot_be_shown_is_refused_before_any_request(hub: FakeHub, text: str) -> None:
    with pytest.raises(TuillmError, match="search text must be 1 to 200 printable characters"):
        api.search(text)
    assert hub.requests == []


def test_a_quant_held_by_several_files_is_asked_for_by_file(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = FakeRepo("evil/Twins-GGUF")
    monkeypatch.setitem(hub.repos, repo.repo, repo)
    part = hub.repos[SPLIT_REPO].files[PART1].path
    for name in ("a/m-Q8_0.gguf", "b/m-Q8_0.gguf", "m.q8_0.gguf"):
        repo.add(name, part)
    with pytest.raises(TuillmError, match=r"^evil/Twins-GGUF has 3 Q8_0 models \(a/m-Q8_0.gguf, b/m-Q8_0.gguf, "
                       r"m.q8_0.gguf\); name one with --file$"):
        pull.choose(f"{repo.repo}:q8_0")
    assert pull.choose(repo.repo, file="b/m-Q8_0.gguf").files[0].name == "b/m-Q8_0.gguf"


def test_a_storage_host_that_cannot_be_reached_is_named(mirror: Mirror) -> None:
    """The Hub answers and redirects the bytes to its storage (another host): when that host is down, the line
    names it, not the Hub that answered."""
    hub = mirror.hub
    f = hub.repos[DEMO_REPO].files[Q2]

    def storage_down(h: _Handler) -> None:  # the header probe's GET and the download's HEAD alike
        return h._send(302, b"", {"Location": f"http://127.0.0.1:9/cdn/{f.sha256()}", "ETag": f'"{f.git_oid()}"',
                                  "X-Repo-Commit": hub.repos[DEMO_REPO].sha, "X-Linked-Etag": f'"{f.sha256()}"',
                                  "X-Linked-Size": str(f.size)})

    mirror.routes[f"/{DEMO_REPO}/resolve/{hub.repos[DEMO_REPO].sha}/{Q2}"] = storage_down
    with pytest.raises(HubError) as err:
        pull.pull(f"{DEMO_REPO}:Q2_K")
    assert "cannot reach the Hub's file storage at http://127.0.0.1:9 (" in str(err.value), str(err.value)
