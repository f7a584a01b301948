"""llama.cpp server's own routes: ``GET /health``, ``POST /tokenize`` and ``POST /detokenize``, in its shapes.

Tokens come from the model's vocabulary alone (llama.cpp loads no weights for it), so tokenizing neither loads nor
waits for the chat model; a few vocabularies are kept. ``model`` names a served model (default: the first, the
server's default). Every field is checked before llama.cpp sees it: text and token lists are bounded, and a token id
outside the vocabulary (which llama.cpp would read past its tables for) is a 400. Errors take llama.cpp server's
shape (``{"error": {"code", "message", "type"}}``, ``guard.error_body``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.llama.embedding import NotLoaded, Vocabulary
from tuillm.core.serve.api import parse
from tuillm.core.serve.embedder import checked_file
from tuillm.core.serve.guard import HEALTH_PATHS
from tuillm.core.serve.models import LoadFailed, ModelHost, ServedModel

MAX_TEXT_CHARS = 4 << 20  # a 1M-token context's worth of text
MAX_TOKENS = 1 << 20  # llama.cpp's largest context (core.llama.options.MAX_CTX)
VOCABS_KEPT = 2  # vocabularies held at once (a large one is tens of MB)


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # strict: `"add_special": 1` is no bool

    model: str | None = None  # None: the server's default model


class TokenizeRequest(_In):
    content: str = Field(default="", max_length=MAX_TEXT_CHARS)  # llama.cpp server answers [] without it
    add_special: bool = False  # BOS (and EOS) where the model's vocabulary adds them
    parse_special: bool = True  # special tokens' text (<|im_start|>) read as those tokens
    with_pieces: bool = False  # each token with its text


class DetokenizeRequest(_In):
    tokens: list[int] = Field(default_factory=list, max_length=MAX_TOKENS)


class Vocabs:
    """The vocabularies of the models asked about lately, each behind a lock (its calls one at a time)."""

    def __init__(self, kept: int = VOCABS_KEPT) -> None:
        self.kept = kept
        self._lock = threading.Lock()
        self._vocabs: OrderedDict[str, Vocab] = OrderedDict()

    def get(self, model: ServedModel) -> Vocab:
        """``model``'s vocabulary, opened once; a file llama.cpp cannot read is a ``LoadFailed`` (503)."""
        key = str(model.path)
        with self._lock:
            if key in self._vocabs:
                self._vocabs.move_to_end(key)
                return self._vocabs[key]
            vocab = self._vocabs[key] = Vocab.open(model)
            while len(self._vocabs) > self.kept:
                self._vocabs.popitem(last=False)[1].close()
            return vocab

    def close(self) -> None:
        with self._lock:
            for vocab in self._vocabs.values():
                vocab.close()
            self._vocabs.clear()


class Vocab:
    """A model's vocabulary (llama.cpp's, without the weights); its calls one at a time (``lock``)."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._vocabulary = vocabulary
        self.n_vocab = vocabulary.n_vocab
        self.lock = threading.Lock()
        self.closed = False  # let go of by the cache: a call that got it just before opens it again

    @classmethod
    def open(cls, model: ServedModel) -> Vocab:
        try:
            checked_file(model.path)
            return cls(Vocabulary.open(model.path))
        except ModelFileError as exc:
            raise LoadFailed(str(exc)) from None
        except NotLoaded as exc:
            raise LoadFailed(f"{model.path.name}: {exc}") from None

    def tokenize(self, body: TokenizeRequest) -> list[Any]:
        """The tokens of ``body.content`` (with their pieces when asked), as llama.cpp server's /tokenize."""
        tokens = self._vocabulary.tokenize(body.content, add_special=body.add_special,
                                           parse_special=body.parse_special) \
            if body.content or body.add_special else []
        if body.with_pieces:
            return [{"id": token, "piece": self._piece(token)} for token in tokens]
        return tokens

    def detokenize(self, tokens: list[int]) -> str:
        bad = next((t for t in tokens if not 0 <= t < self.n_vocab), None)
        if bad is not None:  # llama.cpp would read past its tables
            raise TuillmError(f"tokens: {bad} is not in the model's vocabulary (0 to {self.n_vocab - 1})")
        return self._vocabulary.detokenize(tokens).decode("utf-8", errors="replace")

    def _piece(self, token: int) -> str | list[int]:
        """A token's text as llama.cpp server gives it: a string, or its bytes where they split a character."""
        piece = self._vocabulary.piece(token)
        try:
            return piece.decode("utf-8")
        except UnicodeDecodeError:
            return list(piece)

    def close(self) -> None:
        with self.lock:  # not while a call uses it
            self.closed = True
            self._vocabulary.close()


def default_model(host: ModelHost, name: str | None) -> ServedModel:
    """The model a request names, else the server's default (the first one it serves)."""
    return host.find(name) if name is not None else next(iter(host.models.values()))


def routes(app: FastAPI, host: ModelHost, vocabs: Vocabs) -> None:
    async def with_vocab(name: str | None, work: Any) -> Any:
        model = default_model(host, name)

        def run() -> Any:
            while True:
                vocab = vocabs.get(model)
                with vocab.lock:
                    if not vocab.closed:
                        return work(vocab)

        return await asyncio.to_thread(run)

    @app.api_route(HEALTH_PATHS[0], methods=["GET", "HEAD"])
    @app.api_route(HEALTH_PATHS[1], methods=["GET", "HEAD"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}  # answering at all means the server is up: models load on demand

    @app.post("/tokenize")
    async def tokenize_route(request: Request) -> dict[str, Any]:
        body = await parse(request, TokenizeRequest)
        return {"tokens": await with_vocab(body.model, lambda vocab: vocab.tokenize(body))}

    @app.post("/detokenize")
    async def detokenize_route(request: Request) -> dict[str, Any]:
        body = await parse(request, DetokenizeRequest)
        return {"content": await with_vocab(body.model, lambda vocab: vocab.detokenize(body.tokens))}
