"""A server stopped while it generates: the reply running gets the grace, then is cut; the requests queued behind
it get a 503 in their API's error shape (they got a plain-text 500), and the log says the server stopped them, not
that their clients left (499)."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import openai
import pytest

from tests.core.serve.conftest import Served, start_server

BOUND_S = 60  # a bound on each wait, so a server that never answers fails the test instead of hanging it
NO_END = {"0": -100, "2": -100}  # the demo's end tokens: the reply runs to max_tokens, well past the grace


def queue(served: Served, path: str, body: dict) -> socket.socket:
    """A request sent so that it is surely in the server (its route reads the body: 100 Continue) and then queued
    behind the reply running."""
    sock = socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=BOUND_S)
    data = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
    sock.sendall(data)
    return sock


def answer(sock: socket.socket) -> tuple[bytes, object]:
    """The status line and the JSON body of the answer (the server closes the connection after it)."""
    got = b""
    while data := sock.recv(65536):
        got += data
    sock.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), got
    return head.split(b"\r\n")[0], json.loads(body)


def test_queued_requests_get_503_in_their_shape_and_the_cut_reply_is_logged_as_503(tmp_path: Path) -> None:
    served = start_server(tmp_path, "demo", "--ctx", "8192")
    try:
        _stop_while_generating(served)
    finally:
        if served.proc.poll() is None:  # the test failed: no server left behind
            served.proc.kill()
            served.proc.wait()


def _stop_while_generating(served: Served) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0, timeout=BOUND_S)
    running = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Count to 9999"}],
                                             max_tokens=8000, logit_bias=NO_END, stream=True)
    next(iter(running))  # it is generating
    ask = [{"role": "user", "content": "Hi"}]
    queued = [queue(served, "/v1/chat/completions", {"model": "demo", "messages": ask, "max_tokens": 2}),
              queue(served, "/api/chat", {"model": "demo", "messages": ask, "stream": False})]
    served.proc.send_signal(signal.SIGTERM)
    with pytest.raises(openai.APIConnectionError):  # 8000 tokens take longer than the grace
        for _ in running:  # the rest of the reply, until the grace is over and the stream is cut
            pass
    assert answer(queued[0]) == (b"HTTP/1.1 503 Service Unavailable", {"error": {
        "message": "the server is shutting down", "type": "server_error", "param": None, "code": None}})
    assert answer(queued[1]) == (b"HTTP/1.1 503 Service Unavailable", {"error": "the server is shutting down"})
    assert served.proc.wait(BOUND_S) == 128 + signal.SIGTERM
    served.wait_for_line("stopped by SIGTERM")
    log = served.log()
    assert "POST /v1/chat/completions 503 " in log and "POST /api/chat 503 " in log, log
    cut = served.wait_for_line(r"POST /v1/chat/completions demo ")
    assert " 503 " in cut and cut.endswith("(the server is shutting down; its generation stopped)"), cut
    assert " 499 " not in log and "Traceback" not in log
