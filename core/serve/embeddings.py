"""Embeddings in OpenAI's shape (``POST /v1/embeddings``) and Ollama's (``POST /api/embed``, and the older
``POST /api/embeddings``), over the ``Embedder``.

OpenAI's and ``/api/embed``'s vectors are normalized (unit length), as theirs are; the older Ollama route gives the
raw vector, as Ollama's does. ``dimensions`` keeps the first so many values and normalizes them again (Ollama's
and OpenAI's way of shortening a vector). OpenAI's ``base64`` is the little-endian float32 bytes (what its client
asks for by default). An input past the context is a 400 (OpenAI's; Ollama's with ``truncate: false``), else cut
at the context (Ollama's default). Ollama's request without input loads the model for embeddings (or, with
``keep_alive: 0``, unloads it), as Ollama's does. OpenAI's ``input`` may also be token ids: one list of them, or a
list of such lists (its client sends these itself), embedded as they are (no BOS added) and counted in ``usage``;
their shape is checked here, their ids against the loaded model's vocabulary (``embedder``). One request takes one
kind: a mix is a 400, as is an empty list. Ollama's routes take text only, as Ollama's do.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LOAD_OPTIONS
from tuillm.core.options import option_map
from tuillm.core.serve.api import Api, ClientLeft, Stoppable, parse, watch
from tuillm.core.serve.embedder import Embedded, Embedder, Input
from tuillm.core.serve.guard import RequestRecord, clock
from tuillm.core.serve.models import LoadTerms, ServedModel
from tuillm.core.serve.ollama import Options, keep_alive_s

MAX_INPUTS = 2048  # OpenAI's bound on one request's inputs
MAX_INPUT_CHARS = 1 << 20  # all inputs together (OpenAI's bound is 300k tokens)
MAX_INPUT_TOKENS = MAX_INPUT_CHARS  # all token arrays together: as many ids as a text's most characters
_CONTEXT = option_map(LOAD_OPTIONS)["n_ctx"]  # num_ctx is checked as --ctx is


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # strict: `"truncate": "no"` is no bool


class OpenAIEmbedRequest(_In):
    model: str
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None  # accepted and ignored, as OpenAI's other fields that do not change the answer


class _OllamaIn(_In):
    model: str = Field(min_length=1)
    options: Options | None = None
    keep_alive: Any = None  # a number or a duration string (ollama.keep_alive_s); None: the server's --idle-unload

    def terms(self) -> LoadTerms:
        n_ctx = self.options.num_ctx if self.options else None
        if n_ctx is not None:
            n_ctx = _CONTEXT.check_field(n_ctx, "options.num_ctx")
        return LoadTerms(keep_alive_s(self.keep_alive), n_ctx)


class OllamaEmbedRequest(_OllamaIn):
    input: str | list[Any] = ""
    truncate: bool = True
    dimensions: int | None = None


class OllamaEmbeddingsRequest(_OllamaIn):
    prompt: str = ""


def inputs_of(value: str | list[Any], token_ids: bool = True) -> list[Input]:
    """The inputs, bounded: one text, a list of texts, one list of token ids or a list of such lists (OpenAI's four
    forms; Ollama's routes, ``token_ids=False``, take the first two); an empty text or token list is refused."""
    if isinstance(value, str):
        return _texts([value])
    if not value:
        return []
    if all(isinstance(x, str) for x in value):
        return _texts(value)
    arrays = [value] if all(type(x) is int for x in value) else value  # JSON true is no token id
    if not all(isinstance(x, list) and all(type(t) is int for t in x) for x in arrays):
        raise TuillmError("input: must be a text or a list of texts" if not token_ids else
                          "input: must be a text, a list of texts, a list of token ids or a list of lists of token "
                          "ids, all of one kind")
    if not token_ids:
        raise TuillmError("input: token ids are OpenAI's (/v1/embeddings); Ollama's embeddings take text")
    return _token_arrays(arrays)


def _texts(texts: list[str]) -> list[Input]:
    _bounded(texts, "texts", (MAX_INPUT_CHARS, "characters"), "empty text")
    return list(texts)


def _token_arrays(arrays: list[list[int]]) -> list[Input]:
    _bounded(arrays, "token arrays", (MAX_INPUT_TOKENS, "token ids"), "an empty token array")
    return [tuple(x) for x in arrays]


def _bounded(inputs: list[str] | list[list[int]], kind: str, most: tuple[int, str], empty_one: str) -> None:
    """A request's bounds, the same for texts and token arrays: how many, how much in all (``most``: the count and
    its unit), none empty."""
    if len(inputs) > MAX_INPUTS:
        raise TuillmError(f"input: at most {MAX_INPUTS} {kind} per request, not {len(inputs)}")
    if sum(len(x) for x in inputs) > most[0]:
        raise TuillmError(f"input: at most {most[0]} {most[1]} per request")
    empty = next((i for i, x in enumerate(inputs) if not x), None)
    if empty is not None:
        raise TuillmError(f"input {empty}: {empty_one} has nothing to embed")


def _check_dimensions(dimensions: int | None, model: ServedModel) -> None:
    width = model.info.n_embd
    if dimensions is not None and not 1 <= dimensions <= width:
        raise TuillmError(f"dimensions: must be a whole number from 1 to {width} (the model's width), not "
                          f"{dimensions}")


def normalized(vector: Sequence[float], dimensions: int | None = None) -> Any:
    """``vector``'s first ``dimensions`` values (all: None) scaled to unit length, as float32."""
    import numpy as np

    values = np.asarray(vector, dtype=np.float64)[:dimensions]
    norm = float(np.linalg.norm(values))
    return (values / norm if norm > 0 else values).astype(np.float32)


def _encoded(vector: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class _Routes:
    """What the embedding routes share: the model found, the work watched (a client that leaves stops it between
    batches), the log line."""

    def __init__(self, api: Api, embedder: Embedder) -> None:
        self.api = api
        self.embedder = embedder

    async def embed(self, request: Request, model: ServedModel, inputs: list[Input], terms: LoadTerms,
                    truncate: bool) -> Embedded:
        t0, job = clock(), Stoppable()
        try:
            done = await watch(request, self.embedder.embed(model, inputs, terms, truncate, job.stop), job)
        except TuillmError:
            if job.left:
                raise ClientLeft("client closed the connection; its embeddings stopped") from None
            raise
        request.state.logged = True
        self.api.log(RequestRecord(request.method, request.url.path, 200, clock() - t0, model.name, done.tokens,
                                   load_s=done.load_s))
        return done

    async def load_only(self, model: ServedModel, terms: LoadTerms) -> float:
        """Ollama's request without input: loads the model for embeddings, or unloads it (keep_alive 0)."""
        if terms.keep == 0:
            await self.embedder.release(model)
            return 0.0
        return await self.embedder.preload(model, terms)


def routes(app: FastAPI, api: Api, embedder: Embedder) -> None:
    shared = _Routes(api, embedder)

    @app.post("/v1/embeddings")
    async def openai_embeddings(request: Request) -> dict[str, Any]:
        body = await parse(request, OpenAIEmbedRequest)
        model = api.host.find(body.model)
        inputs = inputs_of(body.input)
        if not inputs:
            raise TuillmError("input: an empty list has nothing to embed")
        _check_dimensions(body.dimensions, model)
        done = await shared.embed(request, model, inputs, LoadTerms(), truncate=False)
        data = [{"object": "embedding", "index": i,
                 "embedding": _encoded(normalized(v, body.dimensions), body.encoding_format)}
                for i, v in enumerate(done.vectors)]
        return {"object": "list", "data": data, "model": model.name,
                "usage": {"prompt_tokens": done.tokens, "total_tokens": done.tokens}}

    @app.post("/api/embed")
    async def ollama_embed(request: Request) -> dict[str, Any]:
        body = await parse(request, OllamaEmbedRequest)
        model, terms = api.host.find(body.model), body.terms()
        _check_dimensions(body.dimensions, model)
        texts = [] if body.input == "" else inputs_of(body.input, token_ids=False)
        if not texts:
            load_s = await shared.load_only(model, terms)
            return {"model": model.name, "embeddings": [], "load_duration": _ns(load_s)}
        done = await shared.embed(request, model, texts, terms, body.truncate)
        return {"model": model.name, "embeddings": [normalized(v, body.dimensions).tolist() for v in done.vectors],
                "total_duration": _ns(done.total_s), "load_duration": _ns(done.load_s),
                "prompt_eval_count": done.tokens}

    @app.post("/api/embeddings")
    async def ollama_embeddings(request: Request) -> dict[str, Any]:
        body = await parse(request, OllamaEmbeddingsRequest)
        model, terms = api.host.find(body.model), body.terms()
        if not body.prompt:
            await shared.load_only(model, terms)
            return {"embedding": []}
        done = await shared.embed(request, model, [body.prompt], terms, truncate=True)
        return {"embedding": [float(x) for x in done.vectors[0]]}  # raw, as Ollama's older route gives it
