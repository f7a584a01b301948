"""Search, listing, fit and pull against a local Hub (tests/hub_server.py), the real huggingface_hub talking."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from tests.hub_server import CHECKPOINT_REPO, DEMO_REPO, GATED_REPO, SPLIT_REPO, FakeHub
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Event, Log, Progress
from tuillm.core.models.catalog import discover, hf_cache_dir
from tuillm.core.models.hub import api, download, pull
from tuillm.core.models.hub.client import HubError, HubOffline
from tuillm.core.models.hub.fit import quant_fits


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(repo: str) -> list[str]:
    folder = download.repo_folder(hf_cache_dir(), repo)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() \
        else []


def test_search_finds_gguf_repos_with_their_quants(hub: FakeHub) -> None:
    hits = api.search("smollm2")
    assert [h.repo for h in hits] == [DEMO_REPO]
    h = hits[0]
    assert h.downloads == 5000 and h.likes == 40 and h.last_modified == "2026-01-15"
    assert h.quants == ("Q2_K", "Q4_K_M", "Q8_0")  # the mmproj file is not a quant
    assert CHECKPOINT_REPO not in [x.repo for x in api.search("tiny")]  # not a GGUF repo


def test_listing_groups_splits_and_reports_mmproj(hub: FakeHub) -> None:
    demo = api.listing(DEMO_REPO)
    assert [q.quant for q in demo.quants] == ["Q2_K", "Q4_K_M", "Q8_0"]
    assert [m.name for m in demo.mmproj] == ["mmproj-SmolLM2-135M-f16.gguf"]
    assert demo.commit == hub.repos[DEMO_REPO].sha
    q2 = demo.quants[0].files[0]
    assert q2.sha256 == hub.repos[DEMO_REPO].files[q2.name].sha256()
    split = api.listing(SPLIT_REPO)
    assert len(split.quants) == 1 and len(split.quants[0].files) == 2 and split.quants[0].quant == "Q8_0"


def test_fit_of_each_quant_from_the_remote_header(hub: FakeHub, demo_gguf: Path) -> None:
    from tuillm.core.models.fit import load_fit
    from tuillm.core.models.metadata import read_info
    from tuillm.core.settings import load_config

    listing = api.listing(DEMO_REPO)
    fits = quant_fits(listing, load_config(), Path("/nowhere"), available=64 << 30)
    local = load_fit(read_info(demo_gguf), load_config(), available=64 << 30).estimate
    # The smallest quant is the demo file itself: judged from 2 MB of it, its estimate is the local file's.
    assert fits[0].fit.estimate.total_bytes == local.total_bytes
    assert fits[0].fit.estimate.kv_bytes == local.kv_bytes > 0
    assert fits[1].fit.estimate.total_bytes - local.total_bytes == pytest.approx(4 << 20, rel=0.01)
    # Only the header's first bytes were fetched, by a Range request.
    gets = hub.served("GET", "/cdn/")
    assert gets and all(h.get("range", "").startswith("bytes=0-") for h in gets)


def test_auto_choice_prefers_q4_k_m_and_falls_back_to_what_fits(hub: FakeHub) -> None:
    roomy = pull.choose(DEMO_REPO, available=64 << 30)
    assert roomy.chosen is not None and roomy.chosen.quant.quant == "Q4_K_M"
    assert "Q4_K_M" in roomy.reason and "fits" in roomy.reason
    q2_need = roomy.fits[0].fit.estimate.total_bytes
    # Room for Q2_K only (fits up to 85% of the available memory): the largest that fits, and why not Q4_K_M.
    tight = pull.choose(DEMO_REPO, available=int(q2_need / 0.85) + (1 << 20))
    assert tight.chosen is not None and tight.chosen.quant.quant == "Q2_K"
    assert "largest quant that fits" in tight.reason and "Q4_K_M tight" in tight.reason
    with pytest.raises(TuillmError, match="no quant of .* fits"):
        pull.choose(DEMO_REPO, available=q2_need // 2)
    with pytest.raises(TuillmError, match="Q8_0 of .* does not fit.*--force"):
        pull.choose(f"{DEMO_REPO}:Q8_0", available=q2_need // 2)
    assert pull.choose(f"{DEMO_REPO}:q8_0", available=q2_need // 2, force=True).files[0].name.endswith("Q8_0.gguf")
    with pytest.raises(TuillmError, match="has no IQ1_S .*quants: Q2_K, Q4_K_M, Q8_0"):
        pull.choose(f"{DEMO_REPO}:IQ1_S")


def test_a_quant_not_there_names_a_few_of_a_long_listing(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    from tests.ggufs import write_tiny_gguf
    from tests.hub_server import FakeRepo

    repo, tiny = FakeRepo("tuillm-test/Many-GGUF"), write_tiny_gguf(tmp_path / "tiny.gguf")
    for i in range(300):  # a hostile listing held 20,000: every name went into the one line
        repo.add(f"part{i:03}.gguf", tiny)
    monkeypatch.setitem(hub.repos, repo.repo, repo)
    with pytest.raises(TuillmError) as err:
        pull.choose(f"{repo.repo}:IQ1_S")
    assert str(err.value).endswith(f"part022, part023 and 276 more; `tuillm pull {repo.repo} --list` shows them)")
    assert len(str(err.value)) < 400


def test_pull_places_the_file_as_huggingface_hub_does_and_lists_it(hub: FakeHub, demo_gguf: Path) -> None:
    events: list[Event] = []
    result = pull.run(pull.choose(f"{DEMO_REPO}:Q2_K"), events.append)
    commit = hub.repos[DEMO_REPO].sha
    folder = download.repo_folder(hf_cache_dir(), DEMO_REPO)
    assert result.path == folder / "snapshots" / commit / "SmolLM2-135M-Instruct-Q2_K.gguf"
    assert result.path.is_symlink() and sha256(result.path) == sha256(demo_gguf)
    assert result.path.resolve() == folder / "blobs" / hub.repos[DEMO_REPO].files[result.path.name].sha256()
    assert (folder / "refs" / "main").read_text() == commit
    # huggingface_hub itself finds it where it looks, and its cache scan sees a sound repository.
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    assert try_to_load_from_cache(DEMO_REPO, result.path.name, cache_dir=hf_cache_dir()) == str(result.path)
    scan = scan_cache_dir(hf_cache_dir())
    assert not scan.warnings and [r.repo_id for r in scan.repos] == [DEMO_REPO]
    assert next(iter(scan.repos)).size_on_disk == demo_gguf.stat().st_size
    assert not [p for p in folder.rglob("*.incomplete")]
    progress = [e for e in events if isinstance(e, Progress) and e.stage == "download"]
    assert progress[-1].done == progress[-1].total == demo_gguf.stat().st_size and "MB/s" in progress[-1].message
    assert any(isinstance(e, Log) and "mmproj" in e.message for e in events)
    listed = discover().find(result.model)
    assert listed is not None and listed.source == "hf-cache" and listed.path == result.path
    # A second pull finds it there: nothing is fetched again.
    hub.requests.clear()
    assert pull.run(pull.choose(f"{DEMO_REPO}:Q2_K")).path == result.path
    assert all(h["range"] == "bytes=0-2097151" for h in hub.served("GET", "/cdn/"))  # the header probe only


def test_split_gguf_is_fetched_whole_and_listed_once(hub: FakeHub) -> None:
    result = pull.pull(SPLIT_REPO)
    snap = result.path.parent
    assert sorted(p.name for p in snap.iterdir()) == ["tiny-Q8_0-00001-of-00002.gguf", "tiny-Q8_0-00002-of-00002.gguf"]
    names = [e.name for e in discover().entries if e.source == "hf-cache"]
    assert names == [f"{SPLIT_REPO}/tiny-Q8_0-00001-of-00002.gguf"]


def test_checkpoint_takes_config_tokenizer_and_safetensors_never_pickles(hub: FakeHub) -> None:
    result = pull.pull(CHECKPOINT_REPO, checkpoint=True)
    assert sorted(p.name for p in result.path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert not hub.served("GET", f"/{CHECKPOINT_REPO}/resolve/main/pytorch_model.bin")
    with pytest.raises(TuillmError, match="holds no GGUF"):
        pull.pull(CHECKPOINT_REPO)
    with pytest.raises(TuillmError, match="no safetensors"):
        pull.pull(DEMO_REPO, checkpoint=True)


def test_interrupted_download_resumes_where_it_stopped(hub: FakeHub, demo_gguf: Path) -> None:
    name = "SmolLM2-135M-Instruct-Q2_K.gguf"
    half = demo_gguf.stat().st_size // 2
    # The connection drops at half; huggingface_hub's own retries (5) get nothing more: the run gives up.
    choice = pull.choose(f"{DEMO_REPO}:Q2_K")
    hub.drops[name] = [half, 0, 0, 0, 0, 0]
    with pytest.raises(HubError, match="interrupted.*run the same command again to resume"):
        pull.run(choice)
    part = download.partial_path(hf_cache_dir(), DEMO_REPO, hub.repos[DEMO_REPO].files[name].sha256())
    kept = part.stat().st_size  # huggingface_hub keeps whole 10 MiB blocks of what came
    assert half - (10 << 20) <= kept <= half
    assert leftovers(DEMO_REPO) == [f"blobs/{part.name}"]  # nothing under a final name
    hub.requests.clear()
    result = pull.run(choice)  # the next run asks for the rest only
    assert [h.get("range") for h in hub.served("GET", "/cdn/")] == [f"bytes={kept}-"]
    assert sha256(result.path) == sha256(demo_gguf) and not part.exists()


def test_corrupted_download_is_refused_and_removed(hub: FakeHub) -> None:
    name = "SmolLM2-135M-Instruct-Q2_K.gguf"
    hub.corrupt.add(name)
    with pytest.raises(HubError, match=f"{name}: checksum mismatch.*deleted"):
        pull.pull(f"{DEMO_REPO}:Q2_K")
    assert leftovers(DEMO_REPO) == []


def test_cancel_keeps_the_partial_and_nothing_under_the_final_name(hub: FakeHub) -> None:
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and event.stage == "download" and event.done > 1 << 20:
            cancel.set()

    with pytest.raises(Cancelled):
        pull.pull(f"{DEMO_REPO}:Q2_K", emit, cancel=cancel)
    left = leftovers(DEMO_REPO)
    assert [p for p in left if p.endswith(".incomplete")] and not [p for p in left if p.startswith("snapshots")]


def test_one_line_failures_leave_nothing_behind(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HubError, match="^nobody/nothing: no such repository"):
        pull.pull("nobody/nothing")
    with pytest.raises(HubError, match=f"^{GATED_REPO} is gated: accept its terms.*HF_TOKEN"):
        pull.pull(GATED_REPO)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token")
    with pytest.raises(HubError, match="your token has no access"):
        pull.pull(GATED_REPO)
    monkeypatch.setattr(download, "free_bytes", lambda _path: 10 << 20)
    with pytest.raises(TuillmError, match="not enough disk space .* to download, 10 MiB free"):
        pull.pull(f"{DEMO_REPO}:Q2_K")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOffline, match="offline"):
        pull.pull(DEMO_REPO)
    with pytest.raises(HubOffline, match="offline"):
        api.search("smol")
    assert not hf_cache_dir().exists() or not list(hf_cache_dir().rglob("*.gguf*"))


def test_gated_repo_with_a_granted_token(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", hub.token)
    result = pull.pull(GATED_REPO)
    assert result.path.is_file()
    assert all(h.get("authorization") == f"Bearer {hub.token}" for h in hub.served("HEAD", f"/{GATED_REPO}/"))


def test_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubOffline, match="cannot reach the Hugging Face Hub"):
        api.search("smol")
    with pytest.raises(HubError, match="cannot reach the Hugging Face Hub"):
        pull.pull(DEMO_REPO)


def test_bad_references_are_refused_before_any_request(hub: FakeHub) -> None:
    for ref in ("../etc", "a/b/c", "owner/name:Q4 K", "x"):
        with pytest.raises(TuillmError):
            pull.pull(ref)
    assert hub.requests == []


def test_hostile_file_names_from_the_hub_are_never_fetched(hub: FakeHub, tmp_path: Path, demo_gguf: Path) -> None:
    evil = hub.add_repo("evil/Names-GGUF")
    try:
        evil.add("../../escape-Q4_K_M.gguf", demo_gguf)
        evil.add("bad\x1b[2J-Q8_0.gguf", demo_gguf)
        evil.add("ok-Q2_K.gguf", demo_gguf)
        listing = api.listing("evil/Names-GGUF")
        assert [f.name for f in listing.files] == ["ok-Q2_K.gguf"]
        assert [q.quant for q in listing.quants] == ["Q2_K"]
    finally:
        del hub.repos["evil/Names-GGUF"]


def test_a_server_that_ignores_range_restarts_the_file_and_it_is_still_checked(hub: FakeHub, demo_gguf: Path) -> None:
    name = "SmolLM2-135M-Instruct-Q2_K.gguf"
    choice = pull.choose(f"{DEMO_REPO}:Q2_K")
    hub.drops[name] = [25 << 20, 0, 0, 0, 0, 0]  # 20 MiB kept (whole 10 MiB blocks)
    with pytest.raises(HubError, match="interrupted"):
        pull.run(choice)
    hub.ignore_range.add(name)  # the resume asks for the rest; the whole file comes back (200)
    events: list[Event] = []
    result = pull.run(choice, events.append)
    assert sha256(result.path) == sha256(demo_gguf)
    # huggingface_hub started the file over, so the running hash was void and the file was read again.
    assert any(isinstance(e, Progress) and e.stage == "verify" for e in events)


def test_a_storage_error_is_one_line(hub: FakeHub) -> None:
    hub.fail["SmolLM2-135M-Instruct-Q2_K.gguf"] = 503
    with pytest.raises(HubError, match=r"Q2_K.gguf: download interrupted at 0 B of 94 MiB \(HTTP 503\); run the same"):
        pull.pull(f"{DEMO_REPO}:Q2_K")
    assert not [p for p in leftovers(DEMO_REPO) if "snapshots" in p]


def test_a_file_over_the_plain_http_limit_is_one_line(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "MAX_HTTP_DOWNLOAD_SIZE", 1 << 20)  # the 50 GB limit, scaled to the test file
    with pytest.raises(HubError, match="Q2_K.gguf is larger than 1 MiB: the Hub serves such files through Xet"):
        pull.pull(f"{DEMO_REPO}:Q2_K")
    assert not [p for p in leftovers(DEMO_REPO) if "snapshots" in p or p.endswith(".incomplete")]


def test_two_pulls_of_one_file_take_turns_and_fetch_it_once(hub: FakeHub, demo_gguf: Path) -> None:
    name = "SmolLM2-135M-Instruct-Q2_K.gguf"
    hub.slow[name] = 0.002  # the first is still downloading when the second asks for the file
    choice = pull.choose(f"{DEMO_REPO}:Q2_K")
    events: list[list[Event]] = [[], []]
    results: list[Path | BaseException] = [Path(), Path()]

    def one(i: int) -> None:
        try:
            results[i] = pull.run(choice, events[i].append).path
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results[0] == results[1] and isinstance(results[0], Path) and sha256(results[0]) == sha256(demo_gguf)
    waited = [any(isinstance(e, Log) and "another download of this file is running" in e.message for e in got)
              for got in events]
    assert sorted(waited) == [False, True]
    whole = [h for h in hub.served("GET", "/cdn/") if h.get("range") != "bytes=0-2097151"]  # not the header probe
    assert len(whole) == 1 and leftovers(DEMO_REPO)[0].startswith("blobs/")


def test_a_pull_waiting_for_another_can_be_cancelled(hub: FakeHub) -> None:
    from filelock import FileLock

    choice = pull.choose(f"{DEMO_REPO}:Q2_K")
    f = choice.files[0]
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Log) and "waiting" in event.message:
            cancel.set()

    with FileLock(download.lock_path(hf_cache_dir(), DEMO_REPO, f.sha256 or "")):  # as `hf download` holds it
        with pytest.raises(Cancelled):
            pull.run(choice, emit, cancel=cancel)
    assert cancel.is_set() and not [h for h in hub.served("GET", "/cdn/") if h.get("range") != "bytes=0-2097151"]
