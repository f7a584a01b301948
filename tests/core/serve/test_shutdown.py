"""A server stopped while it generates: the reply running gets the grace, then is cut with an error event in its
API's shape; the requests queued behind it get a 503 in their API's error shape (they got a plain-text 500), and the
log says the server stopped them, not that their clients left (499)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import openai
import pytest

from tests.core.serve.conftest import Served, start_server
from tuillm.core.serve.guard import Guard

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
    with pytest.raises(openai.APIError) as cut_short:  # 8000 tokens take longer than the grace
        for _ in running:  # the rest of the reply, until the grace is over and the stream is cut
            pass
    # an error event says why (it was a connection cut without one: APIConnectionError, an APIError too)
    assert type(cut_short.value) is openai.APIError and cut_short.value.message == "the server is shutting down"
    assert cut_short.value.body == {"message": "the server is shutting down", "type": "server_error", "param": None,
                                    "code": None}
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


async def _cut_while_streaming(path: str, media: bytes, left: bool = False) -> list[dict]:
    """What the guard sends for an app that has sent one event of a streamed answer when its task is cancelled (by
    the stop's grace; by a client that left when ``left``)."""
    sent: list[dict] = []
    streaming = asyncio.Event()

    async def app(scope: dict, _receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", media)]})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        if left:
            scope["state"]["left"] = True
        streaming.set()
        await asyncio.Event().wait()  # the reply goes on

    async def send(message: dict) -> None:
        sent.append(message)

    guard = Guard(app, None, lambda _record: None)
    task = asyncio.create_task(guard({"type": "http", "method": "POST", "path": path, "headers": []}, None, send))
    await streaming.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return sent[2:]


@pytest.mark.parametrize(("path", "media", "last"), [
    ("/v1/chat/completions", b"text/event-stream; charset=utf-8", b'data: {"error": {"message": "the server is '
     b'shutting down", "type": "server_error", "param": null, "code": null}}\n\n'),
    ("/api/chat", b"application/x-ndjson", b'{"error": "the server is shutting down"}\n'),
    ("/api/generate", b"application/x-ndjson", b'{"error": "the server is shutting down"}\n'),
])
def test_a_stream_the_stop_cuts_ends_with_an_error_in_its_apis_shape(path: str, media: bytes, last: bytes) -> None:
    assert asyncio.run(_cut_while_streaming(path, media)) == [
        {"type": "http.response.body", "body": last, "more_body": False}]
    assert json.loads(last.decode().removeprefix("data: "))["error"]


def test_nothing_is_added_to_a_stream_whose_client_left_or_to_a_body_that_is_no_stream() -> None:
    assert asyncio.run(_cut_while_streaming("/api/chat", b"application/x-ndjson", left=True)) == []
    assert asyncio.run(_cut_while_streaming("/api/tags", b"application/json")) == []
