"""The FastAPI app: OpenAI routes under /v1, Ollama routes under /api, over one ``ModelHost``.

Every route resolves the model by name (``ModelHost.find``: 404 when not served), checks the sampling fields
against their declarations, queues the reply on the chat engine's worker and answers with the whole text, or
streams it (SSE for OpenAI, NDJSON for Ollama). A client that leaves stops its own generation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuillm.core.chat.engine import PromptTooLong
from tuillm.core.errors import TuillmError, crash_report, error_text
from tuillm.core.llama.options import PENALTY_OPTIONS, SAMPLING_OPTIONS, SEED, Sampling
from tuillm.core.options import option_map
from tuillm.core.serve import ollama, openai
from tuillm.core.serve.framing import Splice, ndjson, sse
from tuillm.core.serve.guard import Guard, RequestLog, RequestRecord, clock, error_body
from tuillm.core.serve.models import LoadFailed, ModelHost, ServedModel, UnknownModel
from tuillm.core.serve.runner import Finished, ReplyStream
from tuillm.core.settings import sampling_defaults

_Body = TypeVar("_Body", bound=BaseModel)
_DECLARED = option_map((*SAMPLING_OPTIONS, *PENALTY_OPTIONS, SEED))


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
        data = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise BadRequest("malformed JSON in the request body") from None
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors()
        raise BadRequest("; ".join(f"{'.'.join(str(x) for x in p.get('loc', ())) or 'body'}: {p.get('msg')}"
                                   for p in problems[:5])) from None


def _status(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, UnknownModel):
        return 404, "model_not_found"
    if isinstance(exc, PromptTooLong):
        return 400, "context_length_exceeded"
    if isinstance(exc, LoadFailed):
        return 503, "model_not_loaded"
    return 400, None


async def _watch(request: Request, work: Awaitable[Any], stream: ReplyStream) -> Any:
    """``work``'s result; a client that disconnects meanwhile stops the reply (its task is not cancelled)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if not stream.left and await request.is_disconnected():
            stream.left = True
            stream.cancel()


class Api:
    """The routes' shared work over one host, and the request log."""

    def __init__(self, host: ModelHost, log: RequestLog) -> None:
        self.host = host
        self.log = log

    async def start(self, request: Request, name: str, messages: list[dict[str, str]], sampling: Sampling,
                    stops: list[str], raw: bool = False, keep: float | None = None) -> tuple[ServedModel, ReplyStream]:
        model = self.host.find(name)
        stream = ReplyStream(stops)
        await _watch(request, stream.start(self.host, model, messages, sampling, raw, keep), stream)
        return model, stream

    def record(self, request: Request, t0: float, model: str, done: Finished | None, status: int = 200,
               error: str = "") -> None:
        request.state.logged = True
        if status == 499 and done is not None and done.finish_reason == "cancelled":
            error += "; its generation stopped"
        self.log(RequestRecord(request.method, request.url.path, status, clock() - t0, model,
                               done.prompt_tokens if done else 0, done.completion_tokens if done else 0, error))

    async def whole(self, request: Request, t0: float, model: str, stream: ReplyStream) -> Finished:
        """The reply, not streamed; logged (499 when the client left before it was done)."""
        done = await _watch(request, stream.text(), stream)
        self.record(request, t0, model, done, 499 if stream.left else 200,
                    "client closed the connection" if stream.left else "")
        return done

    def streamed(self, request: Request, t0: float, model: str, stream: ReplyStream, media: str,
                 texts: Callable[[list[str]], str], end: Callable[[Finished], str]) -> StreamingResponse:
        """The reply as it comes: the text that arrived since the last write as one chunk (``texts([text])``: an
        SSE event or an NDJSON line), at most one a frame (``runner.FRAME_S``), ``end(finished)`` at the end."""
        async def body() -> AsyncIterator[str]:
            request.state.logged = True  # below, once the stream ends (a client that left: once its reply does)
            status, error = 499, "client closed the connection"
            try:
                async for batch in stream.batches():
                    yield texts(["".join(batch)])
                assert stream.finished is not None
                yield end(stream.finished)
                status, error = 200, ""
            except TuillmError as exc:
                status, error = 500, str(exc)
                yield texts([f"\n[error: {exc}]"])
            finally:
                if stream.finished is None and stream.future is not None:  # the client left: log what was made
                    stream.future.add_done_callback(
                        lambda f: self.record(request, t0, model, stream.finish_of(f), status, error))
                else:
                    self.record(request, t0, model, stream.finished, status, error)

        return StreamingResponse(body(), media_type=media)


def _chat_chunks(rid: str, name: str, created: int, stream: ReplyStream) -> Callable[[list[str]], str]:
    """A streamed chat reply's chunk for each batch: its text spliced into a template, or, when the request asked
    for logprobs, a chunk built whole with the batch's tokens' entries."""
    opening = Splice(lambda t: sse(openai.chat_chunk(rid, name, {"role": "assistant", "content": t},
                                                     created=created)))
    chunk = Splice(lambda t: sse(openai.chat_chunk(rid, name, {"content": t}, created=created)))
    first = True

    def texts(batch: list[str]) -> str:
        nonlocal first
        if stream.logprobs_asked:
            delta = {"role": "assistant", "content": batch[0]} if first else {"content": batch[0]}
            first = False
            entries = openai.chat_logprobs(stream.take_logprobs())
            return sse(openai.chat_chunk(rid, name, delta, created=created, logprobs=entries))
        if first:
            first = False
            return opening(batch[0]) + chunk.many(batch[1:])
        return chunk.many(batch)

    return texts


def _completion_chunks(rid: str, name: str, created: int, stream: ReplyStream, offset: int = 0,
                       ) -> Callable[[list[str]], str]:
    """A streamed completion's chunk for each batch (with logprobs, built whole with its tokens' entries);
    ``offset``: where the reply starts in the completion's text (after an echoed prompt)."""
    chunk = Splice(lambda t: sse(openai.completion(rid, name, t, created=created)))

    def texts(batch: list[str]) -> str:
        nonlocal offset
        if not stream.logprobs_asked:
            return chunk.many(batch)
        entries = openai.completion_logprobs(stream.take_logprobs(), offset)
        offset += sum(len(token) for token in entries["tokens"])
        return sse(openai.completion(rid, name, batch[0], created=created, logprobs=entries))

    return texts


def _openai_routes(app: FastAPI, api: Api) -> None:
    host = api.host

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return openai.model_list([(m.name, m.created) for m in host.models.values()])

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        t0 = clock()
        body = await parse(request, openai.ChatRequest)
        sampling = sampling_for(host, body.sampling(), {"max_tokens": "max_tokens"})
        model, stream = await api.start(request, body.model, body.chat(), sampling, body.stops())
        rid, name, created = openai.new_id("chatcmpl"), model.name, int(time.time())
        if not body.stream:
            done = await api.whole(request, t0, name, stream)
            return openai.chat_completion(rid, name, done)
        texts = _chat_chunks(rid, name, created, stream)

        def end(done: Finished) -> str:
            return sse(openai.chat_chunk(rid, name, {}, done, created)) + "data: [DONE]\n\n"

        return api.streamed(request, t0, name, stream, "text/event-stream", texts, end)

    @app.post("/v1/completions")
    async def complete(request: Request) -> Any:
        t0 = clock()
        body = await parse(request, openai.CompletionRequest)
        sampling = sampling_for(host, body.sampling())
        prompt = body.text()
        echoed, echoed_logprobs = (prompt, await _prompt_logprobs(host, body.model, prompt, sampling)) \
            if body.echo else ("", None)
        messages = [{"role": "user", "content": prompt}]
        model, stream = await api.start(request, body.model, messages, sampling, body.stops(), raw=True)
        rid, name, created = openai.new_id("cmpl"), model.name, int(time.time())
        if not body.stream:
            done = await api.whole(request, t0, name, stream)
            entries = None if done.logprobs is None else openai.completion_logprobs(done.logprobs, len(echoed))
            return openai.completion(rid, name, echoed + done.text, done,
                                     logprobs=openai.joined(echoed_logprobs, entries))
        texts = _completion_chunks(rid, name, created, stream, len(echoed))
        # The echoed prompt is the first chunk written, before the reply's first text or its end.
        head = [sse(openai.completion(rid, name, echoed, created=created, logprobs=echoed_logprobs))] \
            if body.echo else []

        def chunk(batch: list[str]) -> str:
            return (head.pop() if head else "") + texts(batch)

        def end(done: Finished) -> str:
            return (head.pop() if head else "") + sse(openai.completion(rid, name, "", done, created)) \
                + "data: [DONE]\n\n"

        return api.streamed(request, t0, name, stream, "text/event-stream", chunk, end)


async def _prompt_logprobs(host: ModelHost, name: str, prompt: str, sampling: Sampling) -> dict[str, Any] | None:
    """An echoed prompt's logprobs, when the request asked for logprobs (scored by the model)."""
    if sampling.logprobs is None:
        return None
    return openai.prompt_logprobs(await host.score(host.find(name), prompt, sampling.logprobs))


def _ollama_reply(api: Api, request: Request, body: ollama.ChatRequest | ollama.GenerateRequest,
                  line: Callable[[str, str, Finished | None], dict[str, Any]], raw: bool = False,
                  ) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        t0 = clock()
        sampling = sampling_for(api.host, body.sampling(), {"max_tokens": "num_predict"})
        model, stream = await api.start(request, body.model, body.chat(), sampling, body.stops(), raw, body.keep_s())
        if not body.stream:
            done = await api.whole(request, t0, model.name, stream)
            entries = {} if done.logprobs is None else {"logprobs": openai.logprob_entries(done.logprobs)}
            return line(model.name, done.text, done) | entries
        name = model.name

        def texts(batch: list[str]) -> str:
            if stream.logprobs_asked:  # a line with its tokens' entries: built whole
                return ndjson(line(name, batch[0], None) | {"logprobs": openai.logprob_entries(stream.take_logprobs())})
            # A line's created_at is the time it is written: one Splice per write.
            return Splice(lambda t: ndjson(line(name, t, None))).many(batch)

        return api.streamed(request, t0, name, stream, "application/x-ndjson", texts,
                            lambda done: ndjson(line(name, "", done)))
    return run


async def _load_or_unload(host: ModelHost, body: ollama.ChatRequest | ollama.GenerateRequest,
                          ) -> tuple[ServedModel, str]:
    """Ollama's request without messages (or prompt): loads the model, or unloads it when keep_alive is 0 (what
    ``ollama stop`` sends); the model and the done_reason."""
    model, keep = host.find(body.model), body.keep_s()
    if keep == 0:
        await host.release(model)
        return model, "unload"
    await host.preload(model, keep)
    return model, "load"


def _ollama_routes(app: FastAPI, api: Api) -> None:
    host = api.host

    @app.get("/", response_class=PlainTextResponse)
    @app.head("/", response_class=PlainTextResponse)
    async def root() -> str:
        return "Ollama is running"  # what Ollama answers: clients probe it

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": ollama.OLLAMA_API_VERSION}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [ollama.tag(m) for m in host.models.values()]}

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        loaded = host.loaded
        return {"models": [ollama.running(loaded, host.expires_in())] if loaded else []}

    @app.post("/api/show")
    async def show(request: Request) -> dict[str, Any]:
        body = await parse(request, ollama.ShowRequest)
        model = host.find(body.wanted)
        n_ctx = host.session.n_ctx if host.loaded == model else host.load_options(model).n_ctx
        return ollama.show(model, n_ctx)

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        body = await parse(request, ollama.ChatRequest)
        if not body.messages:  # Ollama's way to load a model ahead of use (or, with keep_alive 0, unload it)
            model, reason = await _load_or_unload(host, body)
            return ollama.chat_line(model.name, "") | {"done": True, "done_reason": reason}
        return await _ollama_reply(api, request, body, ollama.chat_line)()

    @app.post("/api/generate")
    async def generate(request: Request) -> Any:
        body = await parse(request, ollama.GenerateRequest)
        if not body.prompt:
            model, reason = await _load_or_unload(host, body)
            return ollama.generate_line(model.name, "") | {"done": True, "done_reason": reason}
        return await _ollama_reply(api, request, body, ollama.generate_line, raw=body.raw)()


def _errors(app: FastAPI, api: Api) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(str(p.get("msg")) for p in exc.errors()[:5]) or "invalid request"
        api.record(request, clock(), "", None, 400, message)
        return JSONResponse(error_body(request.url.path, 400, message), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        api.record(request, clock(), "", None, exc.status_code, message)
        return JSONResponse(error_body(request.url.path, exc.status_code, message), status_code=exc.status_code)

    @app.exception_handler(TuillmError)
    async def refused(request: Request, exc: TuillmError) -> JSONResponse:
        status, code = _status(exc)
        api.record(request, clock(), "", None, status, error_text(exc))
        return JSONResponse(error_body(request.url.path, status, error_text(exc), code), status_code=status)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        line = crash_report(exc)  # the traceback goes to the crash log, not to the server's output
        api.record(request, clock(), "", None, 500, line)
        return JSONResponse(error_body(request.url.path, 500, line), status_code=500)


def create_app(host: ModelHost, *, api_key: str | None = None, cors: list[str] | None = None,
               log: RequestLog | None = None) -> Any:
    """The ASGI app (the guard around FastAPI). The host is closed when the app shuts down."""
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        idle = asyncio.create_task(host.unload_when_idle())
        try:
            yield
        finally:
            idle.cancel()

    app = FastAPI(title="tuillm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api = Api(host, log or (lambda _record: None))
    _errors(app, api)
    _openai_routes(app, api)
    _ollama_routes(app, api)
    if cors:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors, allow_methods=["*"], allow_headers=["*"])
    return Guard(app, api_key, api.log)
