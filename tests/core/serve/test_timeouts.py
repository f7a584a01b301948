"""A client that is slow to send its request (slowloris) or stops mid-way does not hold a connection for ever: a
late body is a 408 in the API's error shape and the connection is closed; a late head, closed. The server here runs
in-process with a read timeout of a second (``ServeOptions.read_timeout``); no model is loaded."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tuillm.core.serve.guard import RequestRecord
from tuillm.core.serve.models import served_models
from tuillm.core.serve.server import ServeOptions, Server
from tuillm.core.settings import Config

READ_TIMEOUT_S = 1.0
BOUND_S = 30  # how long a test waits for the server to act: a bound so a server that never does fails, not hangs
HEAD = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, list[RequestRecord]]]:
    config = Config()
    records: list[RequestRecord] = []
    server = Server(served_models(["demo"], [], config), config, ServeOptions(port=0, read_timeout=READ_TIMEOUT_S),
                    log=records.append)
    server.start()
    yield server, records
    server.stop()


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(0.2)
    return sock


def _wait_for_answer(sock: socket.socket, trickle: bool) -> bytes:
    """What the server sends before it closes the connection (b"": it closed without a word); ``trickle``: a byte
    of body every turn meanwhile, as a slowloris client sends it."""
    got = b""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if trickle and not got:
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    return got
            continue
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += data
    raise AssertionError(f"the connection is still open after {BOUND_S} s: {got!r}")


@pytest.mark.parametrize("trickle", [False, True], ids=["stalls", "trickles"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_a_late_body_is_408_in_the_apis_shape_and_the_connection_closed(
        served: tuple[Server, list[RequestRecord]], path: str, trickle: bool) -> None:
    server, records = served
    before = len(records)
    with _connect(server) as sock:
        sock.sendall(HEAD % path.encode() + b'{"model": "demo", ')
        answer = _wait_for_answer(sock, trickle)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    message = error["message"] if path.startswith("/v1") else error
    assert message == "the request body did not arrive within 1 s"
    assert [(r.path, r.status, r.error) for r in records[before:]] == [(path, 408, message)]


@pytest.mark.parametrize("sent", [b"", b"POST /api/chat HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half a head"])
def test_a_late_head_is_closed(served: tuple[Server, list[RequestRecord]], sent: bytes) -> None:
    server, records = served
    before = len(records)
    with _connect(server) as sock:
        sock.sendall(sent)
        assert _wait_for_answer(sock, trickle=False) == b""
    assert records[before:] == []  # no request came: nothing to log


def test_a_head_sent_a_header_at_a_time_is_closed(served: tuple[Server, list[RequestRecord]]) -> None:
    server, _ = served
    with _connect(server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\n")
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline:  # a header every turn: each one used to keep the connection waiting
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                if sock.recv(65536) == b"":
                    return
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return
        raise AssertionError(f"the connection is still open after {BOUND_S} s")


def test_whole_requests_are_answered_on_a_connection_kept_alive(served: tuple[Server, list[RequestRecord]]) -> None:
    """The limits leave a client that sends its requests whole alone, one after the other on one connection."""
    server, _ = served
    with httpx.Client(base_url=server.url, timeout=BOUND_S) as client:
        for _ in range(3):
            assert client.get("/v1/models").json()["data"][0]["id"] == "demo"
            assert client.post("/api/show", json={"model": "demo"}).json()["details"]["format"] == "gguf"
