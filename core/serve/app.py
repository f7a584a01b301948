"""The FastAPI app: OpenAI routes under /v1, Ollama routes under /api, over one ``ModelHost``; embeddings over an
``Embedder`` beside it (``core.serve.embeddings``), and llama.cpp server's /health, /tokenize and /detokenize
(``core.serve.tokens``).

Every route resolves the model by name (``ModelHost.find``: 404 when not served), checks the sampling fields
against their declarations, queues the reply on the chat engine's worker and answers with the whole text, or
streams it (SSE for OpenAI, NDJSON for Ollama). A client that leaves stops its own generation.

Every GET route answers HEAD as well (without the body; uvicorn leaves it out), a 405 names the methods allowed
(``Allow``), and a path with a slash too many is a 404 in the API's shape: FastAPI's default redirect (307) made
clients send a POST again elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuillm.core.errors import TuillmError, crash_report, error_text
from tuillm.core.serve import completions, embeddings, ollama, openai, tokens
from tuillm.core.serve.api import Api, parse, sampling_for, started, status_of
from tuillm.core.serve.embedder import Embedder
from tuillm.core.serve.framing import SSE_DONE, Splice, ndjson, sse
from tuillm.core.serve.guard import READ_TIMEOUT_S, Guard, RequestLog, clock, cors_options, error_body
from tuillm.core.serve.models import ModelHost, ServedModel
from tuillm.core.serve.runner import Finished, ReplyStream
from tuillm.core.text import shown

GET = ["GET", "HEAD"]  # a GET route answers HEAD too (FastAPI's routes do not add it, Starlette's do)
MAX_PATH_SHOWN = 200  # a path echoed in an error is cut there


def _chat_chunks(rid: str, name: str, created: int, stream: ReplyStream,
                 include_usage: bool) -> Callable[[list[str]], str]:
    """A streamed chat reply's chunk for each batch: its text spliced into a template, or, when the request asked
    for logprobs, a chunk built whole with the batch's tokens' entries."""
    opening = Splice(lambda t: sse(openai.chat_chunk(rid, name, {"role": "assistant", "content": t},
                                                     created=created, include_usage=include_usage)))
    chunk = Splice(lambda t: sse(openai.chat_chunk(rid, name, {"content": t}, created=created,
                                                   include_usage=include_usage)))
    first = True

    def texts(batch: list[str]) -> str:
        nonlocal first
        if stream.logprobs_asked:
            delta = {"role": "assistant", "content": batch[0]} if first else {"content": batch[0]}
            first = False
            entries = openai.chat_logprobs(stream.take_logprobs())
            return sse(openai.chat_chunk(rid, name, delta, created=created, logprobs=entries,
                                         include_usage=include_usage))
        if first:
            first = False
            return opening(batch[0]) + chunk.many(batch[1:])
        return chunk.many(batch)

    return texts


def _openai_routes(app: FastAPI, api: Api) -> None:
    host = api.host

    @app.api_route("/v1/models", methods=GET)
    async def models() -> dict[str, Any]:
        return openai.model_list([(m.name, m.created) for m in host.models.values()])

    @app.api_route("/v1/models/{name:path}", methods=GET)  # a catalog's names may hold a slash
    async def model(name: str) -> dict[str, Any]:
        served = host.find(name)
        return openai.model_entry(served.name, served.created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        t0 = clock()
        body = await parse(request, openai.ChatRequest)
        sampling = sampling_for(host, body.sampling(), body.names())
        model, stream = await api.start(request, body.model, body.chat(), sampling, body.stops())
        rid, name, created = openai.new_id("chatcmpl"), model.name, int(time.time())
        if not body.stream:
            done = await api.whole(request, t0, name, stream)
            return openai.chat_completion(rid, name, done)
        include = body.include_usage
        texts = _chat_chunks(rid, name, created, stream, include)

        def end(done: Finished) -> str:
            usage = sse(openai.usage_chunk(rid, name, "chat.completion.chunk", created, done)) if include else ""
            return sse(openai.chat_chunk(rid, name, {}, done, created, include_usage=include)) + usage + SSE_DONE

        return api.streamed(request, t0, name, stream, "text/event-stream", texts, end)

    @app.post("/v1/completions")
    async def complete(request: Request) -> Any:
        return await completions.complete(api, request)


def _ollama_reply(api: Api, request: Request, body: ollama.ChatRequest | ollama.GenerateRequest,
                  line: Callable[[str, str, Finished | None], dict[str, Any]]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        t0 = clock()
        sampling = sampling_for(api.host, body.sampling(), {"max_tokens": "num_predict"})
        model, stream = await api.start(request, body.model, body.chat(), sampling, body.stops(), body.terms())
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


async def _load_or_unload(host: ModelHost, embedder: Embedder, body: ollama.ChatRequest | ollama.GenerateRequest,
                          ) -> tuple[ServedModel, str]:
    """Ollama's request without messages (or prompt): loads the model, or unloads it when keep_alive is 0 (what
    ``ollama stop`` sends; its embedding context too, as Ollama's one runner serves both); the model and the
    done_reason."""
    model, terms = host.find(body.model), body.terms()
    if terms.keep == 0:
        await host.release(model)
        await embedder.release(model)
        return model, "unload"
    await host.preload(model, terms)
    return model, "load"


def _running(host: ModelHost, embedder: Embedder) -> list[dict[str, Any]]:
    """/api/ps's entries: the chat model loaded, and the model loaded for embeddings when it is another."""
    entries = [ollama.running(host.loaded, host.expires_in(), host.session.n_ctx)] if host.loaded else []
    if embedder.loaded is not None and embedder.loaded != host.loaded:
        entries.append(ollama.running(embedder.loaded, embedder.expires_in(), embedder.n_ctx))
    return entries


def _ollama_routes(app: FastAPI, api: Api, embedder: Embedder) -> None:
    host = api.host

    @app.api_route("/", methods=GET, response_class=PlainTextResponse)
    async def root() -> str:
        return "Ollama is running"  # what Ollama answers: clients probe it

    @app.api_route("/api/version", methods=GET)
    async def version() -> dict[str, str]:
        return {"version": ollama.OLLAMA_API_VERSION}

    @app.api_route("/api/tags", methods=GET)
    async def tags() -> dict[str, Any]:
        return {"models": [ollama.tag(m) for m in host.models.values()]}

    @app.api_route("/api/ps", methods=GET)
    async def ps() -> dict[str, Any]:
        return {"models": _running(host, embedder)}

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
            model, reason = await _load_or_unload(host, embedder, body)
            return ollama.chat_line(model.name, "") | {"done": True, "done_reason": reason}
        return await _ollama_reply(api, request, body, ollama.chat_line)()

    @app.post("/api/generate")
    async def generate(request: Request) -> Any:
        body = await parse(request, ollama.GenerateRequest)
        if not body.prompt:
            model, reason = await _load_or_unload(host, embedder, body)
            return ollama.generate_line(model.name, "") | {"done": True, "done_reason": reason}
        return await _ollama_reply(api, request, body, ollama.generate_line)()


def _errors(app: FastAPI, api: Api) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(str(p.get("msg")) for p in exc.errors()[:5]) or "invalid request"
        api.record(request, started(request), "", None, 400, message)
        return JSONResponse(error_body(request.url.path, 400, message), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {shown(request.url.path, MAX_PATH_SHOWN)}: {exc.detail}"
        api.record(request, started(request), "", None, exc.status_code, message)
        return JSONResponse(error_body(request.url.path, exc.status_code, message), status_code=exc.status_code,
                            headers=exc.headers)  # a 405's Allow

    @app.exception_handler(TuillmError)
    async def refused(request: Request, exc: TuillmError) -> JSONResponse:
        status, code = status_of(exc)
        api.record(request, started(request), "", None, status, error_text(exc))
        return JSONResponse(error_body(request.url.path, status, error_text(exc), code), status_code=status)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        line = crash_report(exc)  # the traceback goes to the crash log, not to the server's output
        api.record(request, started(request), "", None, 500, line)
        return JSONResponse(error_body(request.url.path, 500, line), status_code=500)


def create_app(host: ModelHost, *, api_key: str | None = None, cors: list[str] | None = None,
               log: RequestLog | None = None, read_timeout: float = READ_TIMEOUT_S) -> Any:
    """The ASGI app (the guard around FastAPI). The host is closed when the app shuts down. ``read_timeout``:
    the seconds a request's body may take to arrive (a 408 past them)."""
    embedder, vocabs = Embedder(host), tokens.Vocabs()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        idle = [asyncio.create_task(host.unload_when_idle()), asyncio.create_task(embedder.unload_when_idle())]
        try:
            yield
        finally:
            for task in idle:
                task.cancel()
            await asyncio.to_thread(embedder.close)  # waits for the embeddings running
            vocabs.close()

    app = FastAPI(title="tuillm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    api = Api(host, log or (lambda _record: None))
    _errors(app, api)
    _openai_routes(app, api)
    _ollama_routes(app, api, embedder)
    embeddings.routes(app, api, embedder)
    tokens.routes(app, host, vocabs)
    if cors:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, **cors_options(cors))
    return Guard(app, api_key, api.log, cors=cors, read_timeout=read_timeout)
