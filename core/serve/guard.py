"""The HTTP edge every request passes first: the API key, the body size limit, the error shapes, the log line.

A pure ASGI middleware rather than FastAPI dependencies, so it also covers bodies that are too big before any
route reads them, and the 404 of a path no route has. Its own refusals (401, 413) pass through the same CORS
rules as the routes' answers: a page of an allowed origin reads the 401 rather than a CORS failure.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.serve import openai

MAX_BODY_BYTES = 8 << 20  # a long conversation is well under a megabyte; a request's body is bounded


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
    """OpenAI's error shape under /v1, Ollama's ({"error": text}) elsewhere."""
    if path.startswith("/v1"):
        return openai.error(status, message, code)
    return {"error": message}


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Starlette's CORSMiddleware's settings for ``--cors`` origins (the routes' and the guard's refusals')."""
    return {"allow_origins": origins, "allow_methods": ["*"], "allow_headers": ["*"]}


class BodyTooLarge(TuillmError):
    """A body past the limit, found while it is read (chunked: no Content-Length to refuse it by): a 413."""


class Guard:
    """ASGI middleware: refuses a request without the key (401) or with a body past ``max_body`` (413)."""

    def __init__(self, app: Any, api_key: str | None, log: RequestLog, max_body: int = MAX_BODY_BYTES,
                 cors: list[str] | None = None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.log = log
        self.max_body = max_body
        self.cors = cors or []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = clock()
        scope.setdefault("state", {})["t0"] = t0  # for the error handlers' log lines (api.started)
        status = [500]

        async def noted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self._guarded(scope, receive, noted)
        if not scope.setdefault("state", {}).get("logged"):  # the routes that generate log their own line
            self.log(RequestRecord(scope["method"], scope["path"], status[0], clock() - t0))

    async def _guarded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and path != "/" and scope["method"] != "OPTIONS" \
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

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
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
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, 413, error_body(path, 413, f"the request body is over "
                                                                           f"{self.max_body} bytes"))

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
