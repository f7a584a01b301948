"""The OpenAI API's request and response shapes (chat completions, completions, models, errors).

Requests are pydantic models: a value of the wrong type is a 400 in OpenAI's error shape, and the sampling
numbers go through ``Sampling``'s own declarations (``core.llama.options``), so their ranges are written once.
``logit_bias`` is applied (token ids of the served model), and ``logprobs`` answered in each endpoint's shape (the
log-probabilities of the model's distribution, before penalties and biases, as llama-server reports them), and
llama-server's own ``grammar``, ``json_schema``, ``typical_p``, ``repeat_last_n`` and ``mirostat`` are honoured.
Fields that do not change the answer (``user``, ``store``, ``metadata``...) are accepted and ignored, as llama-server
does; what would change it and is not done here (``tools``, ``tool_choice``, ``functions``, more than one choice,
images) is refused with a 400 rather than answered without it, and so is a message without content, as OpenAI's.
Types are strict (JSON's: ``true`` is no number, ``"0.5"`` no temperature; a whole number is a float). A stream
carries its usage only when ``stream_options.include_usage`` asks, in a last chunk of its own with no choices, as
OpenAI's does. Completions' ``echo`` puts the prompt before the reply, with its tokens' logprobs when asked (the
first token has nothing before it: null, as OpenAI answers).
"""

from __future__ import annotations

import codecs
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuillm.core.chat.plain import PlainPrompt
from tuillm.core.errors import TuillmError
from tuillm.core.llama.model import PromptScore, TokenLogprob
from tuillm.core.serve.constraint import ResponseFormat, reply_grammar
from tuillm.core.serve.runner import MAX_STOP_CHARS, MAX_STOPS, Finished


class _In(BaseModel):
    # strict: lax mode read `"max_tokens": true` as 1 and `"stream": "yes"` as true (an int still fills a float)
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_In):
    type: str
    text: str | None = None


class Message(_In):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[Any] | None = None  # an earlier reply's calls: its content may then be null, as OpenAI's
    function_call: Any = None  # the same before tools

    def text(self, where: str) -> str:
        """The message's text; ``where``: its place, for a refusal. No content is OpenAI's 400 too, but for an
        assistant's reply that called tools; so is an empty list of parts."""
        if self.content is None:
            if self.role == "assistant" and (self.tool_calls or self.function_call is not None):
                return ""
            raise TuillmError(f"{where}.content: {self.role} messages need their content (text or parts), not null")
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            raise TuillmError(f"{where}.content: an empty list of parts (give at least one)")
        if any(part.type != "text" or part.text is None for part in self.content):
            raise TuillmError("only text content is supported (no images or audio)")
        return "".join(part.text or "" for part in self.content)


class StreamOptions(_In):
    include_usage: bool = False


class _Generation(_In):
    """What chat completions and completions share."""

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # llama-server's extension
    min_p: float | None = None  # llama-server's extension
    repeat_penalty: float | None = None  # llama-server's extension
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int = 1
    logit_bias: dict[str, float] | None = None
    typical_p: float | None = None  # llama-server's extensions, as its names and ranges (Sampling's)
    repeat_last_n: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    grammar: str | None = None  # llama-server's: GBNF the reply follows
    json_schema: dict[str, Any] | None = None  # llama-server's: response_format json_schema's schema, shorter

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a chunk of the usage (OpenAI sends none otherwise)."""
        return self.stream_options is not None and self.stream_options.include_usage

    def bias(self) -> tuple[tuple[int, float], ...]:
        """``logit_bias``'s token ids as numbers (JSON keys are strings); the bounds are Sampling's."""
        pairs = []
        for key, value in (self.logit_bias or {}).items():
            if not _TOKEN_ID.fullmatch(key.strip()):  # ASCII digits: isdecimal() took '١٢', int() 5,000 digits
                raise TuillmError(f"logit_bias: keys must be token ids, not {key[:40]!r}")
            pairs.append((int(key), value))
        return tuple(pairs)

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise TuillmError(f"stop: at most {MAX_STOPS} sequences of at most {MAX_STOP_CHARS} characters")
        return stops

    def sampling(self) -> dict[str, Any]:
        """The sampling fields the request gave (None: the settings file's [sampling] applies)."""
        if self.n != 1:
            raise TuillmError("n: only 1 choice per request is supported")
        if self.stream_options is not None and not self.stream:  # OpenAI's 400 too: not ignored
            raise TuillmError("stream_options: only allowed when stream is true")
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p,
                "repeat_penalty": self.repeat_penalty, "max_tokens": self.max_tokens, "seed": self.seed,
                "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
                "logit_bias": self.bias(), "typical_p": self.typical_p, "repeat_last_n": self.repeat_last_n,
                "mirostat": self.mirostat, "mirostat_tau": self.mirostat_tau, "mirostat_eta": self.mirostat_eta,
                "grammar": self.constraint()}

    def constraint(self) -> str | None:
        """The grammar the reply follows (``core.serve.constraint``), or None."""
        return reply_grammar(self.grammar, self.json_schema)


class ChatRequest(_Generation):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None  # function calling before tools
    function_call: Any = None
    logprobs: bool = False
    top_logprobs: int | None = None

    def sampling(self) -> dict[str, Any]:
        self._refuse_tools()
        if self.top_logprobs is not None and not self.logprobs:
            raise TuillmError("top_logprobs needs logprobs: true")
        values = super().sampling()
        values["logprobs"] = (self.top_logprobs or 0) if self.logprobs else None
        values["max_tokens"] = self._max_tokens()
        return values

    def constraint(self) -> str | None:
        return reply_grammar(self.grammar, self.json_schema, self.response_format)

    def _refuse_tools(self) -> None:
        """Function calling, said rather than answered as if the tools were not there ("none" asks for none)."""
        if self.tools:
            raise TuillmError("tools (function calling) are not supported by tuillm serve")
        if self.functions:
            raise TuillmError("functions (function calling) are not supported by tuillm serve")
        for name, value in (("tool_choice", self.tool_choice), ("function_call", self.function_call)):
            if value not in (None, "none"):
                raise TuillmError(f"{name}: function calling is not supported by tuillm serve (only \"none\")")

    def _max_tokens(self) -> int | None:
        """``max_completion_tokens`` (max_tokens' newer name), checked as max_tokens is (0 is no absence)."""
        if self.max_completion_tokens is None:
            return self.max_tokens
        if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
            raise TuillmError(f"max_tokens ({self.max_tokens}) and max_completion_tokens "
                              f"({self.max_completion_tokens}) differ: give one")
        return self.max_completion_tokens

    def names(self) -> dict[str, str]:
        """The request's own names for the fields ``sampling`` gives, for its refusals."""
        return {"max_tokens": "max_tokens" if self.max_completion_tokens is None else "max_completion_tokens"}

    def chat(self) -> list[dict[str, str]]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text(f"messages[{i}]")}
                for i, m in enumerate(self.messages)]


# Prompts of one completions request, answered one after the other (lm-eval sends its batch size's worth).
_TOKEN_ID = re.compile(r"[0-9]{1,10}")
MAX_PROMPTS = 128


class CompletionRequest(_Generation):
    # Text or the token ids a client tokenized it into (lm-eval's local-completions sends those), or a list of
    # these; read by ``plains``, which says in one line what is wrong with it.
    prompt: str | list[Any]
    max_tokens: int | None = 16  # OpenAI's default for completions; 0 with echo: the prompt alone, scored
    logprobs: int | None = None  # the alternatives to report with each token (OpenAI takes 0 to 5)
    echo: bool = False  # the prompt before the reply (with its tokens' logprobs when logprobs is given)
    suffix: str | None = None  # text after the insertion: refused (no fill-in-the-middle here)
    best_of: int | None = None  # refused above 1 (one candidate per prompt)

    def prompt_only(self) -> bool:
        """``echo`` with ``max_tokens: 0``: the answer is the prompt (with its logprobs), no reply."""
        return self.echo and self.max_tokens == 0

    def sampling(self) -> dict[str, Any]:
        if self.suffix:
            raise TuillmError("suffix (insertion, fill-in-the-middle) is not supported by tuillm serve")
        if self.best_of not in (None, 1):
            raise TuillmError("best_of: only 1 candidate per prompt is supported")
        values = super().sampling() | {"logprobs": self.logprobs}
        return values | {"max_tokens": None} if self.prompt_only() else values

    def plains(self) -> list[PlainPrompt]:
        """The prompts, each answered in its own choice: text, token ids (whole numbers from 0; the vocabulary's
        bound is the model's, checked where it is loaded: core.chat.plain), or a list of these."""
        prompt: Any = self.prompt
        if isinstance(prompt, str):
            return [PlainPrompt(prompt)]
        if _token_ids(prompt):  # one prompt of ids ([]: the engine says it is empty)
            return [PlainPrompt(ids=tuple(prompt))]
        if not all(isinstance(one, str) or (isinstance(one, list) and _token_ids(one)) for one in prompt):
            raise TuillmError("prompt: must be text or token ids (whole numbers from 0), or a list of these")
        if len(prompt) > MAX_PROMPTS:
            raise TuillmError(f"prompt: at most {MAX_PROMPTS} prompts per request, not {len(prompt)}")
        return [PlainPrompt(one) if isinstance(one, str) else PlainPrompt(ids=tuple(one)) for one in prompt]


def _token_ids(values: list[Any]) -> bool:
    return all(type(value) is int and value >= 0 for value in values)  # JSON true is no token id


# --- responses ------------------------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(done: Finished) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def finish_reason(done: Finished) -> str:
    return "length" if done.finish_reason == "length" else "stop"


def _token(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": piece.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(piece)}


def logprob_entries(entries: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """Each token with its alternatives, as chat's ``logprobs.content`` (and Ollama's ``logprobs``) lists them."""
    return [_token(e.piece, e.logprob) | {"top_logprobs": [_token(p, lp) for p, lp in e.top]} for e in entries]


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {"content": logprob_entries(entries)}


def _completion_token(piece: bytes) -> str:
    """A token as completions' logprobs name it: its text, or where it holds part of a character (a piece of an
    emoji), ``bytes:`` and its bytes (``bytes:\\xf0\\x9f``), as OpenAI writes them: such pieces stay told apart."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + piece.decode("ascii", errors="backslashreplace")


class TextOffsets:
    """Where each token's text starts in a completion's text: the characters that its bytes and those before it
    complete, as the reply's text was decoded (a token holding the start of a character starts where it does)."""

    def __init__(self, start: int = 0) -> None:
        self.at = start
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def next(self, piece: bytes) -> int:
        start = self.at
        self.at += len(self._decoder.decode(piece))
        return start


def completion_logprobs(entries: Sequence[TokenLogprob], offsets: TextOffsets) -> dict[str, Any]:
    """Completions' ``logprobs``; ``offsets``: where the tokens before these end in the completion's text."""
    return {"tokens": [_completion_token(e.piece) for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{_completion_token(p): lp for p, lp in e.top} for e in entries],
            "text_offset": [offsets.next(e.piece) for e in entries]}


def prompt_logprobs(score: PromptScore) -> dict[str, Any]:
    """Completions' ``logprobs`` of an echoed prompt: its first token has nothing before it to score it (null)."""
    offsets = TextOffsets()
    first = offsets.next(score.first)
    rest = completion_logprobs(score.entries, offsets)
    return {"tokens": [_completion_token(score.first), *rest["tokens"]],
            "token_logprobs": [None, *rest["token_logprobs"]], "top_logprobs": [None, *rest["top_logprobs"]],
            "text_offset": [first, *rest["text_offset"]]}


def joined(first: dict[str, Any] | None, then: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two runs of completions' ``logprobs`` as one (an echoed prompt's, then the reply's)."""
    if first is None or then is None:
        return first if then is None else then
    return {key: first[key] + then[key] for key in first}


def chat_completion(rid: str, model: str, done: Finished) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                         "logprobs": None if done.logprobs is None else chat_logprobs(done.logprobs),
                         "finish_reason": finish_reason(done)}],
            "usage": usage(done)}


def chat_chunk(rid: str, model: str, delta: dict[str, str], done: Finished | None = None,
               created: int | None = None, logprobs: dict[str, Any] | None = None,
               include_usage: bool = False) -> dict[str, Any]:
    """One streamed chunk; the last one (``done``) carries the finish reason. ``created``: the stream's (every chunk
    of one completion has the same, as OpenAI's). ``include_usage``: the stream ends with ``usage_chunk``, and
    every chunk before it has ``"usage": null``, as OpenAI's."""
    chunk: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created or int(time.time()),
                             "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                                          "finish_reason": finish_reason(done) if done else None}]}
    return chunk | {"usage": None} if include_usage else chunk


def usage_chunk(rid: str, model: str, kind: str, created: int, done: Finished) -> dict[str, Any]:
    """A stream's last chunk when ``stream_options.include_usage`` asks: no choices, the request's usage.
    ``kind``: the stream's chunks' ``object``."""
    return {"id": rid, "object": kind, "created": created, "model": model, "choices": [], "usage": usage(done)}


def completion_choice(text: str, done: Finished | None, logprobs: dict[str, Any] | None = None,
                      index: int = 0) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason(done) if done else None}


def completion_chunk(rid: str, model: str, text: str, created: int, done: Finished | None = None,
                     logprobs: dict[str, Any] | None = None, include_usage: bool = False) -> dict[str, Any]:
    """A streamed completion's chunk; the last one (``done``) carries the finish reason (the usage: see
    ``chat_chunk``)."""
    chunk = completions(rid, model, [completion_choice(text, done, logprobs)], None, created)
    return chunk | {"usage": None} if include_usage else chunk


def completions(rid: str, model: str, choices: list[dict[str, Any]], done: Finished | None = None,
                created: int | None = None) -> dict[str, Any]:
    """A completion of each prompt as its choice; ``done``: the usage of them all (None: none, a streamed chunk)."""
    body: dict[str, Any] = {"id": rid, "object": "text_completion", "created": created or int(time.time()),
                            "model": model, "choices": choices}
    if done is not None:
        body["usage"] = usage(done)
    return body


def model_entry(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "tuillm"}


def model_list(models: list[tuple[str, int]]) -> dict[str, Any]:
    return {"object": "list", "data": [model_entry(name, created) for name, created in models]}


# Every status the server answers with: a 405 (a GET route POSTed), a 408 (a body slower than the read timeout) and
# a 413 are the request's fault as a 400 is; a 503 (shutting down, a model that does not fit) is the server's.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
               500: "server_error", 503: "server_error"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def llama_error(status: int, message: str) -> dict[str, Any]:
    """llama.cpp server's error shape (its /health, /tokenize, /detokenize): the status as ``code``."""
    return {"error": {"code": status, "message": message, "type": error_type(status)}}
