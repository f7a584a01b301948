"""``tuillm search`` and ``tuillm pull`` through the real binary against the local Hub (tests/hub_server.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.core.models.hub.mirror import Mirror, mirror_fixture  # noqa: F401 - the fixture
from tests.hub_server import DEMO_REPO, GATED_REPO, FakeHub
from tuillm.core.models.catalog import hf_cache_dir
from tuillm.core.models.hub import download

TUILLM = str(Path(sys.executable).with_name("tuillm"))
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


def tuillm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuillm: ") and needle in lines[0], proc.stderr
    return lines[0]


def cache_files() -> list[str]:
    cache = hf_cache_dir()
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_search_table_and_json(hub: FakeHub) -> None:
    out = tuillm("search", "SmolLM2")
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split() == ["REPO", "DOWNLOADS", "LIKES", "UPDATED", "QUANTS"]
    assert row.split() == [DEMO_REPO, "5000", "40", "2026-01-15", "Q2_K,Q4_K_M,Q8_0"]
    data = json.loads(tuillm("search", "gguf", "--json").stdout)
    assert [r["repo"] for r in data["repos"]] == [DEMO_REPO, GATED_REPO, "tuillm-test/Tiny-Split-GGUF"]
    assert [r["gated"] for r in data["repos"]] == [False, True, False]
    assert tuillm("search", "no-such-thing").stdout.strip() == "no GGUF repositories match 'no-such-thing'"


def test_list_shows_each_quant_with_its_fit_and_the_choice(hub: FakeHub) -> None:
    out = tuillm("pull", DEMO_REPO, "--list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["QUANT", "SIZE", "MEMORY", "FIT", "FILE", "HERE"]
    chosen = [line for line in lines[1:4] if line.startswith("*")]
    assert len(chosen) == 1 and "Q4_K_M" in chosen[0] and "fits" in chosen[0]
    assert lines[4].startswith(f"{DEMO_REPO}: Q4_K_M, the usual pick")
    data = json.loads(tuillm("pull", DEMO_REPO, "--list", "--json").stdout)
    assert [q["quant"] for q in data["quants"]] == ["Q2_K", "Q4_K_M", "Q8_0"]
    assert [q["chosen"] for q in data["quants"]] == [False, True, False]
    assert data["mmproj"] == ["mmproj-SmolLM2-135M-f16.gguf"] and cache_files() == []


def test_pull_picks_downloads_lists_and_chats(hub: FakeHub) -> None:
    out = tuillm("pull", DEMO_REPO, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["files"] == [Q4] and data["model"] == f"{DEMO_REPO}/{Q4}"
    assert Path(data["path"]).is_file() and data["mmproj"] == ["mmproj-SmolLM2-135M-f16.gguf"]
    assert not any("mmproj" in p for p in cache_files())  # the projector is reported, not fetched
    models = {m["name"]: m for m in json.loads(tuillm("models", "--json").stdout)["models"]}
    assert models[data["model"]]["source"] == "hf-cache"
    chat = tuillm("chat", data["model"], "--prompt", "What is the capital of France?", "--ctx", "512",
                  "--temp", "0", "--max-tokens", "12")
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr


def test_sigterm_keeps_the_partial_and_the_next_run_resumes(hub: FakeHub) -> None:
    hub.slow[Q4] = 0.002  # about 30 MB/s: the download is still running when the signal comes
    proc = subprocess.Popen([TUILLM, "pull", f"{DEMO_REPO}:Q4_K_M"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    etag = hub.repos[DEMO_REPO].files[Q4].sha256()
    part = download.partial_path(hf_cache_dir(), DEMO_REPO, etag)
    deadline = time.monotonic() + 120  # a bound so a broken run fails instead of hanging
    while not (part.exists() and part.stat().st_size > 4 << 20) and proc.poll() is None:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-2:] == ["tuillm: the part downloaded is kept; run the same command again to "
                                             "resume", "tuillm: stopped by SIGTERM"]
    kept = part.stat().st_size
    assert kept > 0 and not any("/snapshots/" in p for p in cache_files())
    hub.slow.clear()
    hub.requests.clear()
    out = tuillm("pull", f"{DEMO_REPO}:Q4_K_M")
    assert out.returncode == 0, out.stderr
    assert [h["range"] for h in hub.served("GET", "/cdn/") if not h["range"].startswith("bytes=0-")] == \
        [f"bytes={kept}-"]
    assert "ready:" in out.stdout and not part.exists()
    size = hub.repos[DEMO_REPO].files[Q4].size
    assert [line for line in out.stdout.splitlines() if "Q4_K_M" in line and line.endswith(
        f"{100 * kept // size}% kept")]  # the table said what the run would resume
    listed = tuillm("pull", DEMO_REPO, "--list").stdout
    assert [line for line in listed.splitlines() if "Q4_K_M" in line and line.endswith("downloaded")]
    assert "mmproj-SmolLM2-135M-f16.gguf: a vision projector (mmproj), not downloaded" in out.stderr


def test_failures_are_one_line_and_leave_nothing(hub: FakeHub) -> None:
    one_line_error(tuillm("pull", "nobody/nothing"), "nobody/nothing: no such repository")
    one_line_error(tuillm("pull", GATED_REPO), "is gated: accept its terms")
    one_line_error(tuillm("pull", DEMO_REPO, "--file", "nope.gguf"), "has no file 'nope.gguf'")
    one_line_error(tuillm("pull", "../../etc"), "not a Hub repository id")
    one_line_error(tuillm("pull", f"{DEMO_REPO}:Q4 K"), "not a quant name")
    one_line_error(tuillm("search", "x", "--limit", "0"), "--limit")
    one_line_error(tuillm("search", "x", "--limit", "many"), "--limit")
    offline = tuillm("pull", DEMO_REPO, env={"HF_HUB_OFFLINE": "1"})
    one_line_error(offline, "offline (HF_HUB_OFFLINE is set)")
    one_line_error(tuillm("search", "smol", env={"HF_HUB_OFFLINE": "1"}), "offline")
    assert cache_files() == [] or all(".locks" in p or p.endswith("CACHEDIR.TAG") for p in cache_files())
    assert not hub.served("GET", "/cdn/") or all(h["range"].startswith("bytes=0-")
                                                  for h in hub.served("GET", "/cdn/"))


def test_no_space_is_refused_before_downloading(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tuillm.tui.cli import main

    monkeypatch.setattr(download, "free_bytes", lambda _path: 50 << 20)  # the free-space probe, patched
    assert main(["pull", DEMO_REPO]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tuillm: not enough disk space in ") and "MiB to download, 50 MiB free" in err[-1]
    assert cache_files() == []


def test_the_token_is_used_and_never_shown(hub: FakeHub, isolated_home: Path) -> None:
    secret = "hf_DoNotPrintThisSecret123"
    out = tuillm("pull", GATED_REPO, env={"HF_TOKEN": secret})
    line = one_line_error(out, "your token has no access")
    assert secret not in out.stdout + out.stderr + line
    assert all(h.get("authorization") == f"Bearer {secret}" for h in hub.served("HEAD", f"/{GATED_REPO}/"))
    ok = tuillm("pull", GATED_REPO, env={"HF_TOKEN": hub.token})
    assert ok.returncode == 0 and hub.token not in ok.stdout + ok.stderr
    for f in isolated_home.rglob("*"):  # logs, crash logs, caches: the token is in none of them
        if f.is_file() and f.stat().st_size < 1 << 20:
            assert secret.encode() not in f.read_bytes() and hub.token.encode() not in f.read_bytes(), f


def test_a_bad_hf_endpoint_is_one_line(hub: FakeHub) -> None:
    # huggingface_hub's own import fails on this one: it is refused before the library is imported.
    for args in (("search", "qwen"), ("pull", "a/b"), ("pull", "a/b", "--list")):
        line = one_line_error(tuillm(*args, env={"HF_ENDPOINT": "http://[x"}), "HF_ENDPOINT")
        assert line == "tuillm: HF_ENDPOINT is not an http(s) URL with a host: 'http://[x'"
    assert hub.requests == []


def test_a_mirror_answering_html_is_one_line(mirror: Mirror) -> None:
    mirror.answers["/api/models"] = mirror.answers["/api/models/a/b/revision/main"] = b"<html>mirror</html>"
    why = "is not what was expected (not JSON: Expecting value: line 1 column 1 (char 0))"
    line = one_line_error(tuillm("search", "qwen"), why)
    assert line == f"tuillm: {mirror.url}: the Hub's answer to the search for 'qwen' {why}"
    line = one_line_error(tuillm("pull", "a/b", "--list"), why)
    assert line == f"tuillm: {mirror.url}: the Hub's answer to the file list of a/b {why}"


def test_an_agent_harness_list_neither_breaks_nor_poisons_the_cache(mirror: Mirror, isolated_home: Path) -> None:
    # huggingface_hub's user agent asks this path and reads the answer with .get: a list broke every request, and
    # it was cached for a day under HF_HOME ($XDG_CACHE_HOME/huggingface), so the next runs failed too.
    mirror.answers["/api/agent-harnesses"] = b'[1, "a", null]'
    cached = isolated_home / ".cache" / "huggingface" / ".agent_harnesses.json"
    for run in range(2):
        out = tuillm("search", "SmolLM2")
        assert out.returncode == 0 and DEMO_REPO in out.stdout, out.stderr
        out = tuillm("pull", DEMO_REPO, "--list")
        assert out.returncode == 0 and "Q4_K_M" in out.stdout, out.stderr
        if run == 0:
            assert not cached.exists() and ("GET", "/api/agent-harnesses") not in mirror.seen
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text('[1, "a", null]')  # as an earlier tuillm (or another tool) left it: run 1 meets it


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_a_cache_that_is_not_a_folder_is_one_line(hub: FakeHub, tmp_path: Path, kind: str) -> None:
    where = tmp_path / kind
    where.write_text("") if kind == "file" else os.mkfifo(where)
    out = tuillm("pull", f"{DEMO_REPO}:Q2_K", "-q", env={"HF_HUB_CACHE": str(where)})
    line = one_line_error(out, "cannot write to the Hugging Face cache")
    locks = download.lock_path(where, DEMO_REPO, "etag").parent  # the first folder made: the blob's lock's
    assert line == f"tuillm: cannot write to the Hugging Face cache {where} (Not a directory: {locks})"
    assert where.is_file() if kind == "file" else where.is_fifo()


@pytest.mark.parametrize("fault", ["read-only", "disk full"])
def test_a_cache_that_cannot_be_written_is_one_line(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], fault: str) -> None:
    import errno

    from tuillm.tui.cli import main

    def refuse(*_args: object, **_kwargs: object) -> None:
        code = errno.EACCES if fault == "read-only" else errno.ENOSPC
        raise OSError(code, os.strerror(code), str(hf_cache_dir() / "x"))

    # Simulated: a read-only folder does not stop root, and a tiny file system cannot be mounted here.
    monkeypatch.setattr(Path, "mkdir", refuse) if fault == "read-only" else \
        monkeypatch.setattr(download._HashingFile, "write", refuse)
    assert main(["pull", f"{DEMO_REPO}:Q2_K", "-q"]) == 1
    # The fake Hub's own thread may report the connection the client dropped: tuillm's lines are the ones judged.
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tuillm")]
    assert len(err) == 1, err
    if fault == "read-only":
        assert err[0] == f"tuillm: cannot write to the Hugging Face cache {hf_cache_dir()} (Permission denied: " \
            f"{hf_cache_dir() / 'x'})"
    else:
        assert err[0].startswith(f"tuillm: {DEMO_REPO}/SmolLM2-135M-Instruct-Q2_K.gguf: download interrupted at 0 B "
                                 "of 94 MiB ([Errno 28] No space left on device")
        assert err[0].endswith("; run the same command again to resume")
    assert not any("/snapshots/" in p for p in cache_files())


def test_the_command_suggested_quotes_a_hostile_file_name(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from tests.ggufs import write_tiny_gguf
    from tests.hub_server import FakeRepo
    from tuillm.tui.cli import main

    # Printable, so safe_name takes it: pasted as printed unquoted, the line would run `echo PWNED`.
    name = "x'; echo PWNED; '-Q4_K_M.gguf"
    repo = FakeRepo("tuillm-test/Quoted-GGUF")
    repo.add(name, write_tiny_gguf(tmp_path / "tiny.gguf"))
    monkeypatch.setitem(hub.repos, repo.repo, repo)
    assert main(["pull", repo.repo, "-q"]) == 0
    use = capsys.readouterr().out.strip().splitlines()[-1]
    assert use.startswith("use it: ") and shlex.split(use.removeprefix("use it: ")) == \
        ["tuillm", "chat", f"{repo.repo}/{name}"]
