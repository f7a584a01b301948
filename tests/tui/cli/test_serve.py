"""``tuillm serve``'s flags and start-up: every refusal is one line and exit 1, before anything listens; Ctrl+C
stops a running server cleanly."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx

from tests.core.serve.conftest import start_server
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
