"""The HTTP edge every request passes first: the API key, the body's size and time limits, the error shapes, the log
line.

A pure ASGI middleware rather than FastAPI dependencies, so it also covers bodies that are too big before any
route reads them, and the 404 of a path no route has. Its own refusals (401, 413, 408) pass through the same CORS
rules as the routes' answers: a page of an allowed origin reads the 401 rather than a CORS failure. A body that
does not arrive within ``READ_TIMEOUT_S`` is a 408 and the connection is closed (a late head is closed by
``core.serve.protocol``). A request still running when a stop's grace is over (``server.GRACE_S``) is cut: uvicorn
cancels it, and it is answered (when nothing was sent yet) and logged as a 503, not as a client that left; a stream
already under way ends with an error event in its API's shape (``stream_error``) rather than a bare cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.serve import openai
from tuillm.core.serve.framing import ndjson, sse

MAX_BODY_BYTES = 8 << 20  # a long conversation is well under a megabyte; a request's body is bounded
# The seconds a client may take to send a request's head, and then its body (counted from the head's end): one that
# sends a byte every few seconds (slowloris) or stops mid-way held its connection for ever. uvicorn bounds only the
# idle wait for a next request's first byte (timeout_keep_alive) and the head's size (h11), not their time.
READ_TIMEOUT_S = 30.0
SHUTTING_DOWN = "the server is shutting down"
HEALTH_PATHS = ("/health", "/v1/health")  # llama.cpp server's; answered without the API key, as there
LLAMA_PATHS = (*HEALTH_PATHS, "/tokenize", "/detokenize")  # llama.cpp server's routes: its error shape
CLIENT_LEFT = "client closed the connection"


@dataclass(frozen=True)
class RequestRecord:
    """One request, as the log shows it."""

    method: str
    path: str
    status: int
    seconds: float
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    when: float = field(default_factory=time.time)  # when it ended (epoch seconds)
    load_s: float = 0.0  # of ``seconds``, those spent loading the model first (a swap, another context)


RequestLog = Callable[[RequestRecord], None]


def error_body(path: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape under /v1, llama.cpp server's on its routes, Ollama's ({"error": text}) elsewhere."""
    if path in LLAMA_PATHS:
        return openai.llama_error(status, message)
    if path.startswith("/v1"):
        return openai.error(status, message, code)
    return {"error": message}


def stream_error(path: str, media: str, message: str, status: int = 503, code: str | None = None) -> str:
    """A streamed answer's last event when it ends in an error (the server's stop cut it: 503; its generation
    failed): an SSE ``data: {"error": ...}`` event (OpenAI's clients raise its message; no ``[DONE]`` follows) or an
    NDJSON ``{"error": ...}`` line (Ollama's); nothing for another body (``media``: its content type)."""
    if media.startswith("text/event-stream"):
        return sse(error_body(path, status, message, code))
    if media.startswith("application/x-ndjson"):
        return ndjson(error_body(path, status, message, code))
    return ""


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Starlette's CORSMiddleware's settings for ``--cors`` origins (the routes' and the guard's refusals')."""
    return {"allow_origins": origins, "allow_methods": ["*"], "allow_headers": ["*"]}


class BodyTooLarge(TuillmError):
    """A body past the limit, found while it is read (chunked: no Content-Length to refuse it by): a 413."""


class BodyTimeout(TuillmError):
    """A body that did not arrive within the read timeout: a 408, and the connection is closed."""


def cut(scope: dict[str, Any]) -> tuple[int, str]:
    """The status and log text of a request cut short: its client left (499), else the server stopped it (503):
    uvicorn cancels what still runs when a stop's grace is over, and nothing else cancels a request."""
    return (499, CLIENT_LEFT) if scope.get("state", {}).get("left") else (503, SHUTTING_DOWN)


class Guard:
    """ASGI middleware: refuses a request without the key (401), with a body past ``max_body`` (413) or one slower
    than ``read_timeout`` seconds (408); answers a request the server's stop cuts with a 503."""

    def __init__(self, app: Any, api_key: str | None, log: RequestLog, max_body: int = MAX_BODY_BYTES,
                 cors: list[str] | None = None, read_timeout: float = READ_TIMEOUT_S) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.log = log
        self.max_body = max_body
        self.cors = cors or []
        self.read_timeout = read_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = clock()
        state = scope.setdefault("state", {})
        state["t0"] = t0  # for the error handlers' log lines (api.started)
        status = [0]
        media, ended = [b""], [False]  # the answer's content type; whether its body is all sent

        async def noted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                media[0] = dict(message.get("headers", [])).get(b"content-type", b"")
                if state.get("timed_out"):  # the rest of a late body may still come: not read as the next request
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended[0] = True
            await send(message)

        try:
            await self._guarded(scope, receive, noted)
        except asyncio.CancelledError:
            code, error = cut(scope)
            if not status[0]:
                await self._refuse(scope, noted, code, error_body(scope["path"], code, error))
            elif code == 503 and not ended[0] and (last := stream_error(scope["path"], media[0].decode("latin-1"),
                                                                         error).encode()):
                # A stream the stop cut: its client reads why (an error event) and a whole answer, not a broken one.
                # Sent between two of its events: a cancelled send had not written its event.
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": last, "more_body": False})
            if not state.get("logged"):
                self.log(RequestRecord(scope["method"], scope["path"], code, clock() - t0, error=error))
            raise
        if not state.get("logged"):  # the routes that generate log their own line
            self.log(RequestRecord(scope["method"], scope["path"], status[0] or 500, clock() - t0))

    async def _guarded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and path != "/" and path not in HEALTH_PATHS and scope["method"] != "OPTIONS" \
                and not self._authorized(headers):
            await self._refuse(scope, send, 401, error_body(path, 401, "invalid or missing API key (Authorization: "
                                                                       "Bearer KEY)", "invalid_api_key"))
            return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            await self._refuse(scope, send, 413, error_body(path, 413, f"the request body is over {self.max_body} "
                                                                       "bytes"))
            return
        received = 0
        started = False
        state = scope["state"]
        deadline: float | None = asyncio.get_running_loop().time() + self.read_timeout  # None: the body is in

        async def counted() -> dict[str, Any]:
            nonlocal received, deadline
            try:
                async with asyncio.timeout_at(deadline):  # later receives only watch for the client leaving
                    message = await receive()
            except TimeoutError:
                state["timed_out"] = True
                raise BodyTimeout(f"the request body did not arrive within {self.read_timeout:g} s") from None
            if message["type"] == "http.disconnect":
                state["left"] = True
            elif not message.get("more_body"):
                deadline = None
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise BodyTooLarge(f"the request body is over {self.max_body} bytes")
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except (BodyTooLarge, BodyTimeout) as exc:  # the routes' handlers answer these; here, those that escape
            if not started:
                code = 413 if isinstance(exc, BodyTooLarge) else 408
                await self._refuse(scope, send, code, error_body(path, code, str(exc)))

    async def _refuse(self, scope: dict[str, Any], send: Any, status: int, body: dict[str, Any]) -> None:
        """The guard's error answer, with the CORS headers an allowed origin gets (none without --cors)."""
        async def answer(_scope: dict[str, Any], _receive: Any, send: Any) -> None:
            await _send_json(send, status, body)

        if not self.cors:
            await answer(scope, None, send)
            return
        from starlette.middleware.cors import CORSMiddleware

        async def nothing() -> dict[str, Any]:  # the refusal reads no body
            return {"type": "http.request", "body": b"", "more_body": False}

        await CORSMiddleware(answer, **cors_options(self.cors))(scope, nothing, send)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        assert self.api_key is not None
        given = headers.get(b"authorization", b"")
        token = given[7:].strip() if given[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
        return hmac.compare_digest(token, self.api_key)  # constant time: the key is not guessed byte by byte


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def clock() -> float:
    return time.perf_counter()
