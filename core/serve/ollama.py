"""The Ollama API's request and response shapes (/api/chat, /api/generate, /api/tags, /api/show, /api/ps).

Ollama streams by default: one JSON object per line (NDJSON), the last with ``done: true`` and the counts and
durations (nanoseconds). Options are Ollama's names mapped onto ``Sampling``'s declarations.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuillm.core.errors import TuillmError
from tuillm.core.llama.grammar import json_grammar
from tuillm.core.models.metadata import format_params
from tuillm.core.serve.models import ServedModel
from tuillm.core.serve.runner import MAX_STOP_CHARS, MAX_STOPS, Finished

# What /api/version answers. Ollama clients compare it against the versions that brought the features they use;
# this is the Ollama API level the routes here follow (chat, generate, structured outputs, show, ps).
OLLAMA_API_VERSION = "0.6.0"


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


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


class Message(_In):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[Any] | None = None


class _Generation(_In):
    model: str = Field(min_length=1)
    stream: bool = True
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: float | str | None = None  # the server's --idle-unload decides
    logprobs: bool = False
    top_logprobs: int | None = None

    def stops(self) -> list[str]:
        stops = list(self.options.stop or []) if self.options else []
        if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise TuillmError(f"stop: at most {MAX_STOPS} sequences of at most {MAX_STOP_CHARS} characters")
        return stops

    def sampling(self) -> dict[str, Any]:
        o = self.options or Options()
        values = o.model_dump(exclude={"stop", "num_predict"})
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


class ChatRequest(_Generation):
    messages: list[Message] = Field(default_factory=list)

    def chat(self) -> list[dict[str, str]]:
        if any(m.images for m in self.messages):
            raise TuillmError("images are not supported: tuillm serves text models")
        return [{"role": m.role, "content": m.content} for m in self.messages]


class GenerateRequest(_Generation):
    prompt: str = ""
    system: str | None = None
    raw: bool = False

    def chat(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": self.prompt}]


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


def running(model: ServedModel, idle_unload: float) -> dict[str, Any]:
    expires = datetime.fromtimestamp(time.time() + idle_unload if idle_unload > 0 else 2 ** 31, UTC)
    return tag(model) | {"expires_at": expires.isoformat().replace("+00:00", "Z"), "size_vram": 0}


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
