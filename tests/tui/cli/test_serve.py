"""``tuillm serve``'s flags and start-up: every refusal is one line and exit 1, before anything listens; Ctrl+C
stops a running server cleanly."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.core.serve.conftest import Served, start_server
from tests.tui.cli.test_chat import assert_one_line_error, tuillm


def test_help_shows_how_to_point_clients_at_it() -> None:
    proc = tuillm("serve", "--help")
    assert proc.returncode == 0
    for needle in ("--api-key", "--idle-unload", "--cors", "--ctx", "--n-gpu-layers", "--threads", "--lora", 'base_url="http://127.0.0.1:8080/v1"',
                   "curl http://127.0.0.1:8080/v1/chat/completions", "OLLAMA_HOST=http://127.0.0.1:8080"):
        assert needle in proc.stdout


def test_other_addresses_need_a_key() -> None:
    assert_one_line_error(tuillm("serve", "demo", "--host", "0.0.0.0"), "--host 0.0.0.0", "--api-key")


def test_bad_flags() -> None:
    assert_one_line_error(tuillm("serve", "demo", "--port", "70000"), "--port", "from 0 to 65535")
    assert_one_line_error(tuillm("serve", "demo", "--idle-unload", "-1"), "--idle-unload")
    assert_one_line_error(tuillm("serve", "demo", "--ctx", "8"), "--ctx")
    assert_one_line_error(tuillm("serve", "demo", "--threads", "0"), "--threads")
    assert_one_line_error(tuillm("serve", "demo", "--kv-type", "q2"), "--kv-type")
    assert_one_line_error(tuillm("serve", "no-such-model"), "no-such-model", "no model of that name")
    assert_one_line_error(tuillm("serve", "--lora", "x.gguf"), "--lora needs the base model")


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert_one_line_error(tuillm("serve", "demo", "--port", str(port)), f"127.0.0.1:{port}")


def test_an_adapter_is_not_a_model(tmp_path: Path, demo_gguf: Path) -> None:
    assert_one_line_error(tuillm("serve", "demo", "--lora", str(demo_gguf)), "not a LoRA adapter")
    assert_one_line_error(tuillm("serve", "demo", "--lora", str(tmp_path)), "a folder, not a LoRA adapter GGUF")


def test_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    served = start_server(tmp_path, "demo")
    assert httpx.get(f"{served.url}/v1/models").json()["data"][0]["id"] == "demo"
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(60) in (0, 130)
    assert "Traceback" not in served.log()


def test_sighup_stops_it_as_sigterm_does_with_the_grace(tmp_path: Path) -> None:
    """A dropped SSH session (SIGHUP) stops the server the way SIGTERM does: a request in progress is still answered.
    SIGHUP raised a KeyboardInterrupt inside the event loop: the request was cut at once (a plain-text 500), or, where
    uvicorn caught it in the request's task, the server went on serving and ignored SIGTERM from then on."""
    served = start_server(tmp_path, "demo")
    try:
        _hang_up_while_a_request_is_in_progress(served)
    finally:
        if served.proc.poll() is None:  # it failed: no server left behind (one that ignores SIGHUP ignores SIGTERM)
            served.proc.kill()
            served.proc.wait()


def _hang_up_while_a_request_is_in_progress(served: Served) -> None:
    address = ("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
    body = json.dumps({"model": "demo"}).encode()
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(b"POST /api/show HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")  # the route waits for the body: a request in progress
        served.proc.send_signal(signal.SIGHUP)
        _wait_until_it_stops_listening(address)  # the stop has begun
        sock.sendall(body)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"format":"gguf"' in answer, answer
    assert served.proc.wait(60) == 128 + signal.SIGHUP
    served.wait_for_line("tuillm: stopped by SIGHUP")
    assert re.search(r"POST /api/show 200 ", served.log()) and "Traceback" not in served.log()


def _wait_until_it_stops_listening(address: tuple[str, int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.05)
    raise AssertionError("the server still listens")


def test_without_models_it_serves_the_catalog(tmp_path: Path, demo_gguf: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mini.gguf").symlink_to(demo_gguf)  # another name for the same file: the catalog lists it once
    (folder / "copy.gguf").write_bytes(demo_gguf.read_bytes())
    (folder / "notes.gguf").write_bytes(b"not a model")  # a catalog problem, not a served model
    home = tmp_path / "home"
    (home / ".config" / "tuillm").mkdir(parents=True)
    (home / ".config" / "tuillm" / "config.toml").write_text(f'[models]\ndirs = ["{folder}"]\n')
    served = start_server(home)
    try:
        names = [m["id"] for m in httpx.get(f"{served.url}/v1/models").json()["data"]]
        assert sorted(names) == ["copy", "demo"]
    finally:
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(60)
