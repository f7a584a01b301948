"""The Ollama API's request and response shapes (/api/chat, /api/generate, /api/tags, /api/show, /api/ps).

Ollama streams by default: one JSON object per line (NDJSON), the last with ``done: true`` and the counts and
durations (nanoseconds). Options are Ollama's names mapped onto ``Sampling``'s declarations. Types are strict
(``num_predict: true`` is no count), and what would change the answer and is not done here (``tools``, images,
``suffix``, a request's own ``template``, an earlier reply's ``context``, ``tfs_z`` and ``penalize_newline: false``)
is refused rather than ignored. The options that only place or speed the work (``num_gpu``, ``num_thread``,
``num_batch``, ``main_gpu``, ``use_mmap``, ``numa``...) are ignored, as is ``num_keep``: it is what Ollama keeps when
it shifts the context mid-reply, and a reply here ends at the context's end instead.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuillm.core.chat.plain import PlainPrompt, Prompt
from tuillm.core.errors import TuillmError
from tuillm.core.llama.grammar import json_grammar
from tuillm.core.llama.options import LOAD_OPTIONS
from tuillm.core.models.metadata import format_params
from tuillm.core.options import option_map
from tuillm.core.serve.models import LoadTerms, ServedModel
from tuillm.core.serve.runner import MAX_STOP_CHARS, MAX_STOPS, Finished

# What /api/version answers. Ollama clients compare it against the versions that brought the features they use;
# this is the Ollama API level the routes here follow (chat, generate, structured outputs, show, ps).
OLLAMA_API_VERSION = "0.6.0"
_CONTEXT = option_map(LOAD_OPTIONS)["n_ctx"]  # num_ctx is checked as --ctx is


class _In(BaseModel):
    # strict: lax mode read `"num_predict": true` as 1 and `"stream": "no"` as false (an int still fills a float)
    model_config = ConfigDict(extra="ignore", strict=True)


class Options(_In):
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    num_ctx: int | None = None  # the context to load the model with (Ollama loads it again when it differs)
    typical_p: float | None = None
    repeat_last_n: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    # What llama.cpp no longer does: tail-free sampling (only 1, off, is done) and newlines exempt from the
    # penalties (only true, penalized as any token, is done). Refused otherwise, not ignored.
    tfs_z: float | None = None
    penalize_newline: bool | None = None

    def refuse_undone(self) -> None:
        if self.tfs_z is not None and self.tfs_z != 1:
            raise TuillmError("options.tfs_z: tail-free sampling is not supported (llama.cpp dropped it); 1 is off")
        if self.penalize_newline is False:
            raise TuillmError("options.penalize_newline: false is not supported (llama.cpp penalizes newlines "
                              "as any other token)")


class Message(_In):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[Any] | None = None


class _Generation(_In):
    model: str = Field(min_length=1)
    stream: bool = True
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: Any = None  # checked by keep_s (a number or a duration string); None: the server's --idle-unload
    logprobs: bool = False
    top_logprobs: int | None = None

    def stops(self) -> list[str]:
        stops = list(self.options.stop or []) if self.options else []
        if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise TuillmError(f"stop: at most {MAX_STOPS} sequences of at most {MAX_STOP_CHARS} characters")
        return stops

    def terms(self) -> LoadTerms:
        """How long the model stays loaded after the request, and the context it is to have."""
        n_ctx = self.options.num_ctx if self.options else None
        if n_ctx is not None:
            n_ctx = _CONTEXT.check_field(n_ctx, "options.num_ctx")
        return LoadTerms(keep_alive_s(self.keep_alive), n_ctx)

    def sampling(self) -> dict[str, Any]:
        o = self.options or Options()
        o.refuse_undone()
        values = o.model_dump(exclude={"stop", "num_predict", "num_ctx", "tfs_z", "penalize_newline"})
        # Ollama's -1 ("until the end") and -2 ("fill the context"): the context bounds the reply either way.
        values["max_tokens"] = None if o.num_predict is None else (o.num_predict if o.num_predict > 0 else 1 << 20)
        if self.format == "json":
            values["grammar"] = json_grammar()
        elif isinstance(self.format, dict):
            values["grammar"] = json_grammar(self.format)
        if self.top_logprobs is not None and not self.logprobs:
            raise TuillmError("top_logprobs needs logprobs: true")
        values["logprobs"] = (self.top_logprobs or 0) if self.logprobs else None
        return values


IMAGES_REFUSED = "images are not supported: tuillm serves text models"


class ChatRequest(_Generation):
    messages: list[Message] = Field(default_factory=list)
    tools: list[Any] | None = None

    def chat(self) -> list[dict[str, str]]:
        if any(m.images for m in self.messages):
            raise TuillmError(IMAGES_REFUSED)
        if self.tools:  # said, rather than answered as if the tools were not there
            raise TuillmError("tools (function calling) are not supported by tuillm serve")
        return [{"role": m.role, "content": m.content} for m in self.messages]


class GenerateRequest(_Generation):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    images: list[Any] | None = None
    suffix: str | None = None  # text after the insertion (fill-in-the-middle)
    template: str | None = None  # a Go template to use instead of the model's
    context: list[int] | None = None  # the tokens of an earlier reply, which Ollama hands back (never sent here)

    def chat(self) -> Prompt:
        """The conversation the chat template renders, or (``raw``) the prompt continued as is."""
        if self.images:
            raise TuillmError(IMAGES_REFUSED)
        if self.suffix:
            raise TuillmError("suffix (insertion, fill-in-the-middle) is not supported by tuillm serve")
        if self.template:
            raise TuillmError("template: a request's own prompt template is not supported by tuillm serve (the "
                              "model's chat template is used; raw: true sends the prompt as is)")
        if self.context:
            raise TuillmError("context: an earlier reply's tokens are not supported by tuillm serve (send the "
                              "conversation to /api/chat)")
        if self.raw:
            return PlainPrompt(self.prompt)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": self.prompt}]


# Go's time.ParseDuration, which Ollama reads keep_alive with: "5m", "1h30m", "1.5h", "300ms", "-1m".
_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(f"(?:{_PART.pattern})+")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION_CHARS = 64


def keep_alive_s(value: object) -> float | None:
    """Ollama's ``keep_alive`` in seconds: a number of seconds or a duration string ("5m", "1h30m", "300ms"; a
    plain number in a string is seconds). Negative keeps the model loaded (inf); 0 unloads it once the request is
    done; None (not given): the server's --idle-unload."""
    if value is None:
        return None
    seconds = _keep_number(value) if isinstance(value, int | float) else _keep_text(value)
    if seconds is None:
        shown = repr(value)
        shown = shown if len(shown) <= MAX_DURATION_CHARS else shown[:MAX_DURATION_CHARS] + "…"
        raise TuillmError(f"keep_alive: {shown} is not a duration (seconds, or like 30s, 5m, 1h; -1: keep the model "
                          "loaded; 0: unload it now)")
    return math.inf if seconds < 0 else seconds


def _keep_number(value: float) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer past any float: beyond any useful time too
        return None
    return seconds if math.isfinite(seconds) else None


def _keep_text(value: object) -> float | None:
    if not isinstance(value, str) or len(value) > MAX_DURATION_CHARS:
        return None
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text.startswith(("-", "+")) else text
    if body and all(c.isdigit() or c == "." for c in body):  # seconds, as a string
        try:
            return sign * float(body)
        except ValueError:  # "1.2.3"
            return None
    if not _DURATION.fullmatch(body):
        return None
    return sign * sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(body))


class ShowRequest(_In):
    model: str = ""
    name: str = ""  # older clients

    @property
    def wanted(self) -> str:
        return self.model or self.name


# --- responses ------------------------------------------------------------------------------------------------

def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def final(done: Finished) -> dict[str, Any]:
    """The counts and durations of the last line."""
    eval_s = max(done.total_s - done.ttft_s, 0.0)
    return {"done": True, "done_reason": "length" if done.finish_reason == "length" else "stop",
            "total_duration": _ns(done.total_s + done.load_s), "load_duration": _ns(done.load_s),
            "prompt_eval_count": done.prompt_tokens, "prompt_eval_duration": _ns(done.ttft_s),
            "eval_count": done.completion_tokens, "eval_duration": _ns(eval_s)}


def chat_line(model: str, text: str, done: Finished | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"model": model, "created_at": now(), "message": {"role": "assistant", "content": text},
                            "done": False}
    return line | final(done) if done else line


def generate_line(model: str, text: str, done: Finished | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"model": model, "created_at": now(), "response": text, "done": False}
    return line | final(done) if done else line


def digest(model: ServedModel) -> str:
    """A stable id for the file (Ollama's is the blob's sha256; hashing gigabytes per listing is not worth it)."""
    key = f"{model.path}\0{model.info.size_bytes}\0{model.created}\0{model.lora or ''}"
    return hashlib.sha256(key.encode()).hexdigest()


def details(model: ServedModel) -> dict[str, Any]:
    info = model.info
    return {"parent_model": model.base, "format": "gguf", "family": info.arch,
            "families": [info.arch], "parameter_size": format_params(info.params),
            "quantization_level": info.file_type}


def _modified(model: ServedModel) -> str:
    return datetime.fromtimestamp(model.created, UTC).isoformat().replace("+00:00", "Z")


def tag(model: ServedModel) -> dict[str, Any]:
    return {"name": model.name, "model": model.name, "modified_at": _modified(model),
            "size": model.info.size_bytes, "digest": digest(model), "details": details(model)}


FAR = 2 ** 31  # the expiry shown for a model kept loaded (Ollama shows a date far ahead)


def running(model: ServedModel, expires_in: float, n_ctx: int) -> dict[str, Any]:
    """/api/ps's entry for the loaded model with its context, unloaded in ``expires_in`` seconds (inf: kept)."""
    expires = datetime.fromtimestamp(min(time.time() + expires_in, FAR), UTC)
    return tag(model) | {"expires_at": expires.isoformat().replace("+00:00", "Z"), "size_vram": 0,
                         "context_length": n_ctx}


def show(model: ServedModel, n_ctx: int) -> dict[str, Any]:
    info = model.info
    arch = info.arch
    return {"modelfile": f"FROM {info.path}\n" + (f"ADAPTER {model.lora}\n" if model.lora else ""),
            "parameters": f"num_ctx {n_ctx}", "template": info.chat_template or "", "details": details(model),
            "model_info": {"general.architecture": arch, "general.parameter_count": info.params,
                           f"{arch}.context_length": info.context_length, f"{arch}.block_count": info.n_layers,
                           f"{arch}.embedding_length": info.n_embd, f"{arch}.attention.head_count": info.n_head,
                           f"{arch}.attention.head_count_kv": info.n_head_kv},
            "capabilities": ["completion"], "modified_at": _modified(model)}
