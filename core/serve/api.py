"""What the routes share: the request body parsed into its shape, the sampling fields checked against their
declarations, and ``Api``, which starts a reply on the host and answers it whole or streamed, logging each request.
A client that leaves stops its own generation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from tuillm.core.chat.engine import PromptTooLong
from tuillm.core.chat.plain import PlainPrompt, Prompt
from tuillm.core.errors import TuillmError, crash_report, error_text
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.model import DecodeFailed, PromptScore
from tuillm.core.llama.options import EXTRA_SAMPLING_OPTIONS, PENALTY_OPTIONS, SAMPLING_OPTIONS, SEED, Sampling
from tuillm.core.options import option_map
from tuillm.core.serve.embedder import EmbedFailed, InputTooLong
from tuillm.core.serve.guard import (
    CLIENT_LEFT,
    BodyTimeout,
    BodyTooLarge,
    RequestLog,
    RequestRecord,
    clock,
    cut,
    stream_error,
)
from tuillm.core.serve.models import (
    MAX_NAME_SHOWN,
    SERVER_TERMS,
    LoadFailed,
    LoadTerms,
    ModelHost,
    ServedModel,
    UnknownModel,
)
from tuillm.core.serve.runner import Finished, ReplyStream
from tuillm.core.settings import sampling_defaults
from tuillm.core.text import shown

_Body = TypeVar("_Body", bound=BaseModel)
_DECLARED = option_map((*SAMPLING_OPTIONS, *PENALTY_OPTIONS, *EXTRA_SAMPLING_OPTIONS, SEED))


def sampling_for(host: ModelHost, given: dict[str, Any], names: dict[str, str] | None = None) -> Sampling:
    """The settings file's [sampling] with the request's fields on top, each checked by its declaration and
    refused under the API's own name for it (``temperature: must be a number from 0 to 5, not 9``)."""
    given = {k: v for k, v in given.items() if v is not None}
    for name, value in given.items():
        if name in _DECLARED:
            _DECLARED[name].check_field(value, (names or {}).get(name, name))
    return sampling_defaults(host.config, **given)


class BadRequest(TuillmError):
    """A body that is not JSON, or not of the route's shape."""


async def parse(request: Request, shape: type[_Body]) -> _Body:
    """The request's JSON body as ``shape``, whatever its content type says (Ollama's docs use ``curl -d``)."""
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ClientLeft("client closed the connection while sending its request") from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("malformed JSON in the request body") from None
    if _lone_surrogate(data):
        raise BadRequest("the request body holds a lone surrogate (a \\ud800-\\udfff escape without its pair): "
                         "not text")
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors()  # a place may hold a request's own dict key: shown escaped and cut
        raise BadRequest("; ".join(f"{'.'.join(shown(str(x), MAX_NAME_SHOWN) for x in p.get('loc', ())) or 'body'}: "
                                   f"{p.get('msg')}" for p in problems[:5])) from None


def _lone_surrogate(data: object) -> bool:
    """Whether a string in ``data`` holds half a UTF-16 pair: JSON's escapes allow it, UTF-8 (the prompt, the
    model's file name, the log) cannot encode it."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def started(request: Request) -> float:
    """When the request came in (the guard notes it), for a log line's seconds."""
    return float(request.scope.get("state", {}).get("t0", clock()))


class ClientLeft(TuillmError):
    """The client disconnected while its prompt was scored: the scoring stopped (logged as 499)."""


def status_of(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, ClientLeft):
        return 499, None
    if isinstance(exc, BodyTooLarge):
        return 413, None
    if isinstance(exc, BodyTimeout):
        return 408, None
    if isinstance(exc, UnknownModel):
        return 404, "model_not_found"
    if isinstance(exc, PromptTooLong | InputTooLong):
        return 400, "context_length_exceeded"
    if isinstance(exc, EmbedFailed | DecodeFailed):
        return 500, None
    if isinstance(exc, LoadFailed):
        return 503, "model_not_loaded"
    return 400, None


class _Watched(Protocol):
    """What a client's request runs: it notes whether the client left, and stops when asked."""

    left: bool

    def cancel(self) -> None: ...


@dataclass
class Stoppable:
    """Work a stop flag ends: a prompt being scored (completions' ``echo``), embeddings."""

    stop: StopFlag = field(default_factory=StopFlag)
    left: bool = False

    def cancel(self) -> None:
        self.stop.set()


async def watch(request: Request, work: Awaitable[Any], watched: _Watched) -> Any:
    """``work``'s result; a client that disconnects meanwhile stops the work (its task is not cancelled)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if not watched.left and await request.is_disconnected():
            watched.left = True
            watched.cancel()


class Api:
    """The routes' shared work over one host, and the request log."""

    def __init__(self, host: ModelHost, log: RequestLog) -> None:
        self.host = host
        self.log = log

    async def start(self, request: Request, name: str, prompt: Prompt,
                    sampling: Sampling, stops: list[str], terms: LoadTerms = SERVER_TERMS,
                    ) -> tuple[ServedModel, ReplyStream]:
        model = self.host.find(name)
        stream = ReplyStream(stops)
        await watch(request, stream.start(self.host, model, prompt, sampling, terms), stream)
        return model, stream

    def record(self, request: Request, t0: float, model: str, done: Finished | None, status: int = 200,
               error: str = "") -> None:
        request.state.logged = True
        if status in (499, 503) and done is not None and done.finish_reason == "cancelled":
            error += "; its generation stopped"
        self.log(RequestRecord(request.method, request.url.path, status, clock() - t0, model,
                               done.prompt_tokens if done else 0, done.completion_tokens if done else 0, error,
                               load_s=done.load_s if done else 0.0))

    async def whole(self, request: Request, t0: float, model: str, stream: ReplyStream) -> Finished:
        """The reply, not streamed; logged (499 when the client left before it was done)."""
        done = await self.answer(request, stream)
        self.record_whole(request, t0, model, done, stream.left)
        return done

    async def score(self, request: Request, name: str, prompt: PlainPrompt, top: int) -> PromptScore:
        """``prompt``'s tokens with their logprobs (``top`` alternatives each); a client that leaves stops it."""
        scoring = Stoppable()
        try:
            return await watch(request, self.host.score(self.host.find(name), prompt, top, scoring.stop), scoring)
        except TuillmError:
            if scoring.left:
                raise ClientLeft("client closed the connection; its scoring stopped") from None
            raise

    @staticmethod
    async def answer(request: Request, stream: ReplyStream) -> Finished:
        """The reply, not streamed, not logged (``stream.left``: the client left before it was done)."""
        return await watch(request, stream.text(), stream)

    def record_whole(self, request: Request, t0: float, model: str, done: Finished, left: bool) -> None:
        self.record(request, t0, model, done, 499 if left else 200, CLIENT_LEFT if left else "")

    def streamed(self, request: Request, t0: float, model: str, stream: ReplyStream, media: str,
                 texts: Callable[[list[str]], str], end: Callable[[Finished], str]) -> StreamingResponse:
        """The reply as it comes: the text that arrived since the last write as one chunk (``texts([text])``: an
        SSE event or an NDJSON line), at most one a frame (``runner.FRAME_S``), ``end(finished)`` at the end; a
        generation that fails on the way ends with an error event in the API's shape (``guard.stream_error``)."""
        async def body() -> AsyncIterator[str]:
            request.state.logged = True  # below, once the stream ends (one cut short: once its reply does)
            status, error = 0, ""
            try:
                async for batch in stream.batches():
                    yield texts(["".join(batch)])
                assert stream.finished is not None
                yield end(stream.finished)
                status, error = 200, ""
            except Exception as exc:  # noqa: BLE001 - the generation failed mid-reply (llama.cpp, a bug): said as an error
                status, code = status_of(exc) if isinstance(exc, TuillmError) else (500, None)
                error = error_text(exc) if isinstance(exc, TuillmError) else crash_report(exc)
                # As its API says a failure: the client raises it (not text in the reply), and no [DONE] follows.
                yield stream_error(request.url.path, media, error, status, code)
            finally:
                if not status:  # cut short: the client left (499), or the server's stop did (503)
                    status, error = cut(request.scope)
                if stream.finished is None and stream.future is not None:  # log what was made
                    stream.future.add_done_callback(
                        lambda f: self.record(request, t0, model, stream.finish_of(f), status, error))
                else:
                    self.record(request, t0, model, stream.finished, status, error)

        return StreamingResponse(body(), media_type=media)
