"""Embeddings: one model's embedding context at a time, loaded on demand beside the chat model.

llama.cpp computes embeddings only in a context made for them (``embedding=True``), so a chat model cannot answer
them; the ``Embedder`` loads the requested model a second time that way, on a worker thread of its own (a ``Llama``
is not thread-safe; the chat's worker keeps decoding meanwhile). It follows the chat model's rules: the memory
estimate refuses a load that does not fit (a 503), and it is unloaded once idle for the last request's
``keep_alive`` (Ollama's), else the server's ``--idle-unload``.

Pooling: the file's own (an embedding model's ``{arch}.pooling_type``), else the mean of the tokens' states (a
causal chat model such as the demo has none). The vectors come back raw; the routes normalize them as their API
does. An input is a text or its token ids (OpenAI's token arrays, taken as they are: no BOS added). Every text is
tokenized first; an empty input, one past the context when truncation is off, or a token id outside the loaded
model's vocabulary is refused before llama.cpp sees it (an empty sequence made it free memory twice and abort the
process; an id past the vocabulary reads past its tables).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuillm.core.chat.worker import Worker
from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.embedding import EmbeddingModel, NotLoaded
from tuillm.core.llama.options import LoadOptions
from tuillm.core.serve.keepalive import KeepAlive
from tuillm.core.serve.models import LoadFailed, LoadTerms, ModelHost, ServedModel

# The largest context an embedding is taken over. Each input is decoded in one batch (a sequence split over batches
# would be pooled over its last part only), and the batch's attention scores grow with its square.
EMBED_MAX_CTX = 8192


class InputTooLong(TuillmError):
    """An input past the embedding context, with truncation off: the client's error (a 400)."""


class EmbedFailed(TuillmError):
    """llama.cpp gave no usable vector (not finite): the server's error (a 500)."""


# One input: a text, or token ids (whole numbers; the route checked the shape, the vocabulary's bound is the model's)
Input = str | tuple[int, ...]


@dataclass(frozen=True)
class Embedded:
    """The raw (pooled, not normalized) vectors of a request's inputs, in order, with its counts and timings."""

    vectors: list[list[float]]
    tokens: int
    load_s: float
    total_s: float


def checked_file(path: Path) -> dict[str, Any]:
    """The GGUF's metadata, checked before llama.cpp is given the file (as the chat's load checks it): metadata it
    would abort on (4000 layers, an unknown rope scaling) is a ``ModelFileError`` naming the key."""
    from tuillm.core.models.metadata import checked_gguf_header

    return checked_gguf_header(path).fields


@dataclass
class _Context:
    """A loaded embedding context and what it was loaded for."""

    model: ServedModel
    embedding: EmbeddingModel
    n_ctx: int


class Embedder:
    """One embedding context at a time over ``host``'s models. Async methods run on the server's event loop."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self._worker = Worker("tuillm-embed")  # its thread ends when idle, as the chat's (core.chat.worker)
        self._context: _Context | None = None
        self._swap = asyncio.Lock()
        self.keeper = KeepAlive(lambda: host.idle_unload)  # the embeddings running, and the idle time

    @property
    def loaded(self) -> ServedModel | None:
        return self._context.model if self._context else None

    @property
    def n_ctx(self) -> int:
        return self._context.n_ctx if self._context else 0

    def context_for(self, model: ServedModel, asked: int | None = None) -> int:
        """The context an embedding of ``model`` is taken over: the one asked for, else the server's (the chat's
        load), at most the model's trained one and ``EMBED_MAX_CTX``."""
        n_ctx = asked or self.host.load_options(model).n_ctx
        return min(n_ctx, model.info.context_length or n_ctx, EMBED_MAX_CTX)

    async def embed(self, model: ServedModel, inputs: Sequence[Input], terms: LoadTerms, truncate: bool,
                    stop: StopFlag) -> Embedded:
        """``inputs``' vectors, after loading ``model``'s embedding context on ``terms`` if need be; ``stop`` ends the
        work between batches (a client that left)."""
        t0 = time.perf_counter()
        async with self._swap:
            load_s = await self._ensure(model, terms.n_ctx)
            self.keeper.keep = terms.keep
            self.keeper.begin()
            future = self._worker.submit(self._embed, list(inputs), truncate, stop)
        try:
            vectors, tokens = await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # the server's stop cut the request: its batches stop too
            stop.set()
            raise
        finally:
            self.keeper.end()
        return Embedded(vectors, tokens, load_s, time.perf_counter() - t0)

    async def preload(self, model: ServedModel, terms: LoadTerms) -> float:
        """Loads ``model``'s embedding context now (Ollama's request without input); the load's seconds."""
        async with self._swap:
            self.keeper.keep = terms.keep
            return await self._ensure(model, terms.n_ctx)

    async def release(self, model: ServedModel | None = None) -> None:
        """Unloads the embedding context (of ``model`` only, when given) once the work queued on it is done."""
        async with self._swap:
            if self._context is not None and (model is None or self._context.model == model):
                await self._release_now()

    def expires_in(self) -> float:
        """Seconds until the context is unloaded (inf: kept), counted from its last use."""
        return self.keeper.expires_in()

    async def unload_when_idle(self) -> None:
        """Runs for the server's life: unloads the context once idle for its keep-alive (``KeepAlive``)."""
        await self.keeper.unload_when_idle(lambda: self._context is not None, self._swap, self._release_now)

    async def _release_now(self) -> None:
        await asyncio.wrap_future(self._worker.submit(self._unload))

    def close(self) -> None:
        """Unloads the context and ends the worker (waits for the work queued)."""
        self._worker.submit(self._unload)
        self._worker.shutdown(wait=True)

    async def _ensure(self, model: ServedModel, asked: int | None) -> float:
        """Loads ``model``'s context (in place of another) unless it is loaded as asked; the load's seconds."""
        context, wanted = self._context, self.context_for(model, asked)
        # As the chat model: the context asked for, else at least the server's (a smaller one refuses inputs).
        if context is not None and context.model == model and \
                (context.n_ctx == wanted if asked is not None else context.n_ctx >= wanted):
            return 0.0
        if model.lora is not None:
            raise TuillmError(f"embeddings: '{model.name}' is a LoRA adapter served over '{model.base}'; ask for "
                              f"'{model.base}' (adapters are applied to replies only)")
        t0 = time.perf_counter()
        try:
            await asyncio.wrap_future(self._worker.submit(self._load, model, asked))
        except (ModelFileError, LoadFailed) as exc:
            raise LoadFailed(str(exc)) from None
        self.keeper.touch()
        return time.perf_counter() - t0

    # --- on the worker thread ----------------------------------------------------------------------------------
    def _load(self, model: ServedModel, asked: int | None) -> None:
        self._unload()
        n_ctx = self.context_for(model, asked)
        options = self._options(model, n_ctx)
        pooling = checked_file(model.path).get(f"{model.info.arch}.pooling_type")
        try:
            embedding = EmbeddingModel.load(model.path, options, pooling)
        except NotLoaded as exc:
            raise LoadFailed(f"{model.path.name}: {exc}") from None
        self._context = _Context(model, embedding, n_ctx)

    def _options(self, model: ServedModel, n_ctx: int) -> LoadOptions:
        """The chat's load options at the embedding context, the GPU layers decided; refused (``LoadFailed``) when
        the memory estimate says it does not fit, as a chat load is."""
        from tuillm.core.models.hardware import default_threads
        from tuillm.core.models.memory import default_gpu_layers, load_refusal

        options = replace(self.host.load_options(model), n_ctx=n_ctx, n_batch=n_ctx, lora_path=None)
        layers = options.n_gpu_layers
        if layers is None:
            layers = default_gpu_layers(model.info, n_ctx, options.kv_type)
        options = replace(options, n_gpu_layers=layers, n_threads=options.n_threads or default_threads())
        refusal = load_refusal(model.info, options, embedding=True) if options.check_memory else None
        if refusal is not None:
            raise LoadFailed(refusal)
        return options

    def _embed(self, inputs: list[Input], truncate: bool, stop: StopFlag) -> tuple[list[list[float]], int]:
        """The vectors and the tokens counted (each input cut at the context when ``truncate``)."""
        context = self._context
        assert context is not None, "loaded under the swap lock before the work is queued"
        embedding, n_ctx = context.embedding, context.n_ctx
        sequences = [_tokens(embedding, index, one, n_ctx, truncate) for index, one in enumerate(inputs)]
        vectors: list[list[float]] = []
        for group in _groups([len(tokens) for tokens in sequences], n_ctx):  # a stop between the decodes
            if stop.is_set():
                raise TuillmError("embeddings stopped: the client left")
            vectors.extend(embedding.embed([sequences[i] for i in group]))
        if not all(math.isfinite(x) for vector in vectors for x in vector):
            raise EmbedFailed("llama.cpp gave an embedding that is not finite")
        return vectors, sum(len(tokens) for tokens in sequences)

    def _unload(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.embedding.close()


def _tokens(embedding: EmbeddingModel, index: int, one: Input, n_ctx: int, truncate: bool) -> list[int]:
    """Input ``index``'s tokens, checked: some, in the vocabulary, within the context (else cut there when
    ``truncate``)."""
    if isinstance(one, str):
        tokens = embedding.tokenize(one)
        if not tokens:
            raise TuillmError(f"input {index}: no tokens to embed")
    else:
        tokens = list(one)
        bad = next((t for t in tokens if not 0 <= t < embedding.n_vocab), None)
        if bad is not None:
            raise TuillmError(f"input {index}: token {bad} is not in the model's vocabulary (0 to "
                              f"{embedding.n_vocab - 1})")
    if len(tokens) > n_ctx and not truncate:
        raise InputTooLong(f"input {index}: {len(tokens)} tokens, longer than the context ({n_ctx})")
    return tokens[:n_ctx]


def _groups(counts: list[int], budget: int) -> list[list[int]]:
    """Consecutive inputs' indexes in groups of at most ``budget`` tokens."""
    groups: list[list[int]] = []
    used = budget + 1
    for index, n in enumerate(counts):
        if used + n > budget:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += n
    return groups
