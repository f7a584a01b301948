"""A bad HF_ENDPOINT, a mirror that answers what the Hub never sends, and one that never answers: each is one
HubError line, through the real huggingface_hub talking to the fake Hub on loopback (mirror.py)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.models.hub.mirror import Mirror
from tests.hub_server import DEMO_REPO, FakeHub
from tuillm.core.models.hub import api, client, pull
from tuillm.core.models.hub.client import HubError

SEARCH, LISTING = "/api/models", "/api/models/a/b/revision/main"
HTML = b"<!doctype html><html><body>Welcome to the mirror</body></html>"
DEEP = b"[" * 100_000
LONG_INT = b"9" * 5000
HEX40, HEX64 = "0" * 40, "a" * 64


def failure(fn: Callable[[], object], within_s: float = 10.0) -> BaseException:
    """The exception ``fn`` raises, run on a thread so a hang fails the test instead of stopping the suite."""
    out: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), f"still waiting after {within_s} s"
    assert out, "no error raised"
    return out[0]


@pytest.mark.parametrize("value", ["http://[x", "ftp://mirror.example", "http://", "http://a:99999", "http://a:x",
                                   "http://a?x=1", "http://a#top", "http://a b", " http://a", "http://a..b",
                                   "http://a\x1b[2J", "huggingface.co"])
def test_a_bad_hf_endpoint_is_one_line_naming_it(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", value)
    line = f"HF_ENDPOINT is not an http(s) URL with a host: {value!r}"
    for call in (lambda: api.search("qwen"), lambda: api.listing("a/b"), lambda: pull.pull("a/b")):
        with pytest.raises(HubError) as err:
            call()
        assert str(err.value) == line and "\x1b" not in line
    assert hub.requests == []


def test_a_good_hf_endpoint_may_end_with_a_slash(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "//")
    assert client.endpoint() == hub.url
    assert [h.repo for h in api.search("smollm2")] == [DEMO_REPO]


def test_a_password_in_the_hf_endpoint_is_never_shown(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    # A mirror's URL may carry its credentials (https://user:token@mirror): as secret as the token.
    mirror.answers[LISTING] = HTML
    host = mirror.url.removeprefix("http://")
    for endpoint, needle in ((f"http://alice:s3cret@{host}", f"http://{host}: the Hub's answer to the file list"),
                             ("http://alice:s3cret@127.0.0.1:1", "cannot reach the Hugging Face Hub at "
                                                                 "http://127.0.0.1:1 (")):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        line = str(failure(lambda: api.listing("a/b")))
        assert needle in line and "s3cret" not in line and "alice" not in line, line


def expected(mirror: Mirror, what: str, why: str) -> str:
    return f"{mirror.url}: the Hub's answer to {what} is not what was expected ({why})"


INT_LIMIT = "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"
NOT_JSON = "not JSON: Expecting value: line 1 column 1 (char 0)"


@pytest.mark.parametrize(("body", "why"), [
    (HTML, NOT_JSON), (b'{"error":5}', "not a list of repositories"), (b'[1,"a",null]', "a repository without an id"),
    (DEEP, "nested too deeply"), (LONG_INT, INT_LIMIT), (b'[{"id": 5}]', "a repository without an id"),
    (b'[{"id": "a/b", "downloads": "many"}]', "downloads is not a count"),
    (b'[{"id": "a/b", "likes": -1}]', "likes is not a count"),
    (b'[{"id": "a/b", "siblings": [{"rfilename": 7}]}]', "the file list of 'a/b'"),
    (b'[{"id": "a/b", "siblings": {"rfilename": "x.gguf"}}]', "the file list of 'a/b'"),
])
def test_a_malformed_search_answer_is_one_line(mirror: Mirror, body: bytes, why: str) -> None:
    mirror.answers[SEARCH] = body
    with pytest.raises(HubError) as err:
        api.search("qwen")
    assert str(err.value) == expected(mirror, "the search for 'qwen'", why)


def test_search_leaves_out_ids_pull_would_refuse_and_odd_dates(mirror: Mirror) -> None:
    hits = [{"id": "../../etc"}, {"id": "ok/Repo\n"}, {"id": "ok/Repo."}, {"id": "ok/a..b"},
            {"id": "ok/Repo-GGUF", "lastModified": "yesterday", "gated": "auto",
             "siblings": [{"rfilename": "m-Q4_K_M.gguf"}]}]
    mirror.answers[SEARCH] = json.dumps(hits).encode()
    assert api.search("qwen") == [api.SearchHit("ok/Repo-GGUF", 0, 0, "", ("Q4_K_M",), True)]


def sibling(name: object = "m-Q4_K_M.gguf", **kw: object) -> dict:
    return {"rfilename": name, "size": 100, "blobId": HEX40, **kw}


def info(*siblings: dict, sha: object = HEX40) -> bytes:
    return json.dumps({"id": "a/b", "sha": sha, "siblings": list(siblings)}).encode()


@pytest.mark.parametrize(("body", "why"), [
    (HTML, NOT_JSON), (b'{"error":5}', "no 'id' field"), (DEEP, "nested too deeply"), (LONG_INT, INT_LIMIT),
    (info(sha="../../../outside"), "the commit is not a git hash"), (info(sha=5), "the commit is not a git hash"),
    (info(sibling(7)), "a file without a name"),
    (info(sibling(size="big")), "the size or checksum of 'm-Q4_K_M.gguf'"),
    (info(sibling(size=-5)), "the size or checksum of 'm-Q4_K_M.gguf'"),
    (info(sibling(blobId="../x")), "the size or checksum of 'm-Q4_K_M.gguf'"),
    (info(sibling(lfs={"size": 1, "sha256": "../../x", "pointerSize": 1})), "the size or checksum of 'm-Q4_K_M.gguf'"),
    (info(sibling(lfs={"size": 1})), "no 'sha256' field"),
    # re.match's "$" matches before a final newline: each hex value is matched whole.
    (info(sha=HEX40 + "\n"), "the commit is not a git hash"),
    (info(sibling(blobId=HEX40 + "\n")), "the size or checksum of 'm-Q4_K_M.gguf'"),
    (info(sibling(lfs={"size": 1, "sha256": HEX64 + "\n", "pointerSize": 1})),
     "the size or checksum of 'm-Q4_K_M.gguf'"),
    (info(sibling(size=1 << 64)), "the size or checksum of 'm-Q4_K_M.gguf'"),  # past a C long: no size
    (info(sibling(), sibling()), "it names 'm-Q4_K_M.gguf' twice"),
    (info(sibling("a-00001-of-00002.gguf"), sibling("a-00001-of-00002.gguf", blobId="1" * 40)),
     "it names 'a-00001-of-00002.gguf' twice"),
])
def test_a_malformed_listing_is_one_line(mirror: Mirror, body: bytes, why: str) -> None:
    mirror.answers[LISTING] = body
    with pytest.raises(HubError) as err:
        api.listing("a/b")
    assert str(err.value) == expected(mirror, "the file list of a/b", why)


@pytest.mark.parametrize("body", [b'[1,"a",null]', b"[]", b'"a string"', b"null"])
def test_a_listing_that_is_not_an_object_is_one_line(mirror: Mirror, body: bytes) -> None:
    mirror.answers[LISTING] = body
    with pytest.raises(HubError) as err:
        api.listing("a/b")
    assert re.fullmatch(re.escape(expected(mirror, "the file list of a/b", "@")).replace("@", ".+"), str(err.value))


def test_a_stalled_hub_is_one_line_after_the_timeout(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "API_TIMEOUT_S", 0.3)  # the one API timeout, shortened for the test
    mirror.stall |= {SEARCH, LISTING}
    line = f"cannot reach the Hugging Face Hub at {mirror.url} (timed out)"
    for call in (lambda: api.search("qwen"), lambda: api.listing("a/b")):
        err = failure(call)
        assert isinstance(err, HubError) and str(err) == line
    # One request each: a stalled server is not asked again and again.
    assert mirror.seen.count(("GET", SEARCH)) == 1 and mirror.seen.count(("GET", LISTING)) == 1


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=20)
names = st.sampled_from(["m-Q4_K_M.gguf", "../x.gguf", "a\x1bb.gguf", "a\u202eb.gguf", "README.md"]) | json_values
siblings = st.fixed_dictionaries({"rfilename": names}, optional={
    "size": st.integers(-5, 1 << 40) | json_values, "blobId": st.sampled_from([HEX40, HEX40 + "\n", "x"]) | json_values,
    "lfs": st.fixed_dictionaries({"size": st.integers(-1, 99) | json_values,
                                  "sha256": st.sampled_from([HEX64, HEX64 + "\n", "../x"]) | json_values,
                                  "pointerSize": json_values}) | json_values})
repos = st.fixed_dictionaries({"id": st.sampled_from(["a/b", "a/b\n", "../x"]) | json_values}, optional={
    "siblings": st.lists(siblings, max_size=3) | json_values, "downloads": st.integers(-1, 10) | json_values,
    "likes": json_values, "lastModified": st.sampled_from(["2026-01-15T10:00:00Z", "2026-99"]) | json_values,
    "gated": json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.lists(repos, max_size=3) | json_values)
def test_any_search_answer_gives_hits_or_one_error(monkeypatch: pytest.MonkeyPatch, answer: object) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    try:
        found = api.hits(answer, 2, "the search")
    except HubError as exc:
        assert str(exc).startswith("http://127.0.0.1:9: the Hub's answer to the search is not what was expected (")
        return
    assert len(found) <= 2
    for h in found:
        assert api.check_repo(h.repo) and h.downloads >= 0 and h.likes >= 0
        assert all(isinstance(q, str) for q in h.quants) and re.fullmatch(r"(\d{4}-\d\d-\d\d)?", h.last_modified)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.fixed_dictionaries({"id": st.just("a/b"),
                                    "sha": st.sampled_from([HEX40, HEX40 + "\n", "../x"]) | json_values},
                                    optional={"siblings": st.lists(siblings, max_size=3) | json_values}))
def test_any_listing_answer_gives_safe_files_or_one_error(mirror: Mirror, answer: dict) -> None:
    mirror.answers[LISTING] = json.dumps(answer).encode()
    try:
        got = api.listing("a/b")
    except HubError as exc:
        line = str(exc)
        assert "\n" not in line and (line.startswith(f"{mirror.url}: the Hub's answer to the file list of a/b")
                                      or line == "a/b: the Hub did not name the commit")
        return
    assert api.SHA1_RE.fullmatch(got.commit)
    for f in got.files:
        assert api.safe_name(f.name) and f.name.isprintable() and type(f.size) is int and f.size >= 0
        assert f.sha256 is None or api.SHA256_RE.fullmatch(f.sha256)
        assert f.blob_id is None or api.SHA1_RE.fullmatch(f.blob_id)
