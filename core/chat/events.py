"""Events a chat session emits, on its worker thread, in addition to core.events' Log.

Order for one reply: ``ContextTrimmed`` (only if history was dropped), ``ReplyStarted``, ``Token``..., then
exactly one of ``ReplyDone`` / ``ReplyFailed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tuillm.core.events import Log

if TYPE_CHECKING:
    from tuillm.core.llama.model import TokenLogprob


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    path: str
    n_ctx: int
    n_gpu_layers: int
    load_seconds: float
    lora_path: str | None = None


@dataclass(frozen=True, slots=True)
class ModelUnloaded:
    path: str


@dataclass(frozen=True, slots=True)
class ContextTrimmed:
    """The oldest ``dropped`` messages (never the system prompt) were left out so the reply fits in n_ctx."""

    dropped: int
    kept: int
    message: str


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    prompt_tokens: int
    cached_tokens: int  # prompt prefix already in the KV cache, not evaluated again


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # may be "" when a token is only part of a UTF-8 character
    logprob: TokenLogprob | None = None  # only when the reply's sampling asks for them


@dataclass(frozen=True, slots=True)
class ReplyStats:
    prompt_tokens: int  # the whole rendered prompt
    cached_tokens: int  # of which reused from the previous turn's KV cache
    generated_tokens: int
    ttft_s: float  # request to first token (prompt evaluation included)
    tokens_per_s: float  # decode speed: tokens after the first over the time after the first
    total_s: float
    finish_reason: str  # "stop" | "length" (max_tokens or n_ctx) | "cancelled"
    n_ctx: int = 0
    context_used: int = 0  # tokens in the KV cache after the reply

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ReplyDone:
    text: str
    stats: ReplyStats


@dataclass(frozen=True, slots=True)
class ReplyFailed:
    message: str


ChatEvent = ModelLoaded | ModelUnloaded | ContextTrimmed | ReplyStarted | Token | ReplyDone | ReplyFailed | Log
# Called on the session's worker thread with each event.
ChatEmit = Callable[[ChatEvent], None]
