"""How a model is loaded and how it samples: the option declarations (bounds llama.cpp can take) and the values.

``LOAD_OPTIONS`` and ``SAMPLING_OPTIONS`` are the one place their defaults, ranges and help live; the settings
file, ``tuillm chat``'s flags and the dialogs all check values with them (``tuillm.core.options``). The bounds
keep what reaches llama.cpp inside what it survives: it asserts or crashes on thread counts past its maximum, a
zero or negative batch, and non-finite sampling numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tuillm.core.options import Option, OptionError, check_all, option_map

KV_TYPES = ("f16", "q8_0", "q4_0")
MAX_THREADS = 512  # GGML_MAX_N_THREADS: llama.cpp asserts past it
MAX_CTX = 1 << 20
# Any number past the model's layers means "all" (guides write 99 or 999); the bound only keeps it an int32.
MAX_LAYERS = 1 << 16
# llama.cpp's seed is a uint32 whose all-ones value means "random": a seed given to repeat a reply stops below it.
MAX_SEED = (1 << 32) - 2

# The context has no upper bound of its own: what the machine cannot hold is refused by the memory estimate,
# with the figures, before llama.cpp sees it. ``setting`` is the [load] key of the settings file; options without
# one (batch) are flags only.
LOAD_OPTIONS: tuple[Option, ...] = (
    Option("n_ctx", int, 4096, "context size in tokens", lo=16, flag="--ctx", group="loading",
           label="Context (tokens)", setting="ctx"),
    Option("n_gpu_layers", int, None, "layers to offload to the GPU (-1: all; auto: all that fit when llama.cpp "
           "can offload)", lo=-1, hi=MAX_LAYERS, auto=True, aliases=("--ngl",), group="loading",
           label="GPU layers", setting="n_gpu_layers"),
    Option("n_threads", int, None, "CPU threads (auto: the physical performance cores)", lo=1, hi=MAX_THREADS,
           auto=True, flag="--threads", group="loading", label="Threads", setting="threads"),
    Option("n_batch", int, 512, "prompt batch size", lo=1, hi=1 << 16, flag="--batch", group="loading",
           label="Batch"),
    Option("kv_type", str, "f16", "KV cache type", choices=KV_TYPES, group="loading", label="KV cache type",
           setting="kv_type"),
    Option("flash_attn", bool, False, "use flash attention", group="loading", label="Flash attention",
           setting="flash_attn"),
)
LORA_SCALE = Option("lora_scale", float, 1.0, "LoRA scale", lo=-100.0, hi=100.0, group="loading")
SEED = Option("seed", int, -1, "random seed (-1: random)", lo=-1, hi=MAX_SEED, group="sampling")

# Every one is also a [sampling] key of the settings file, by its name.
SAMPLING_OPTIONS: tuple[Option, ...] = (
    Option("temperature", float, 0.7, "temperature (0: greedy)", lo=0.0, hi=5.0, flag="--temp", group="sampling"),
    Option("top_p", float, 0.95, "nucleus sampling: keep the most likely tokens up to this probability mass",
           lo=0.0, hi=1.0, group="sampling"),
    Option("top_k", int, 40, "keep the k most likely tokens (0: all)", lo=0, hi=1 << 20, group="sampling"),
    Option("min_p", float, 0.05, "drop tokens less likely than this share of the top one", lo=0.0, hi=1.0,
           group="sampling"),
    # llama.cpp divides logits by it: 0 is no value
    Option("repeat_penalty", float, 1.1, "penalty for repeated tokens (1: none)", lo=0.0, lo_open=True, hi=5.0,
           group="sampling"),
    Option("max_tokens", int, 512, "reply length limit in tokens", lo=1, hi=MAX_CTX, flag="--max-tokens",
           aliases=("-n",), group="sampling"),
)

# OpenAI's and Ollama's penalties, which llama.cpp samples with too; flags of no front end but the server's API.
PENALTY_OPTIONS: tuple[Option, ...] = (
    Option("presence_penalty", float, 0.0, "penalty for any token already in the text", lo=-2.0, hi=2.0,
           group="sampling"),
    Option("frequency_penalty", float, 0.0, "penalty for a token by how often it is in the text", lo=-2.0, hi=2.0,
           group="sampling"),
)

# llama-server's and Ollama's further sampling, which llama-cpp-python takes per reply: the server's API only, one
# request's each (not kept with a chat). Mirostat replaces top_k, top_p, min_p and typical_p when on.
EXTRA_SAMPLING_OPTIONS: tuple[Option, ...] = (
    Option("typical_p", float, 1.0, "locally typical sampling (1: off)", lo=0.0, hi=1.0, group="sampling"),
    Option("repeat_last_n", int, 64, "tokens the penalties look back over (0: none, -1: the whole context)",
           lo=-1, hi=MAX_CTX, group="sampling"),
    Option("mirostat", int, 0, "Mirostat sampling (0: off, 1: Mirostat, 2: Mirostat 2.0)", lo=0, hi=2,
           group="sampling"),
    Option("mirostat_tau", float, 5.0, "Mirostat's target surprise", lo=0.0, hi=100.0, group="sampling"),
    Option("mirostat_eta", float, 0.1, "Mirostat's learning rate", lo=0.0, hi=1.0, group="sampling"),
)

_LOAD = option_map(LOAD_OPTIONS)
_SAMPLING = option_map(SAMPLING_OPTIONS)
_EXTRA = option_map(EXTRA_SAMPLING_OPTIONS)


@dataclass(frozen=True)
class LoadOptions:
    n_ctx: int = _LOAD["n_ctx"].default
    n_gpu_layers: int | None = _LOAD["n_gpu_layers"].default  # None: all layers when llama.cpp can offload, else 0
    n_threads: int | None = _LOAD["n_threads"].default  # None: core.models.hardware.default_threads()
    n_batch: int = _LOAD["n_batch"].default
    flash_attn: bool = _LOAD["flash_attn"].default
    kv_type: str = _LOAD["kv_type"].default  # "f16" | "q8_0" | "q4_0"
    use_mmap: bool = True
    seed: int = SEED.default  # -1: random
    lora_path: str | None = None
    lora_scale: float = LORA_SCALE.default
    chat_template: str | None = None  # the user's override of the GGUF's template
    check_memory: bool = True  # refuse before loading when the estimate does not fit

    def __post_init__(self) -> None:
        checked = (*LOAD_OPTIONS, LORA_SCALE, SEED)
        check_all(checked, {o.name: getattr(self, o.name) for o in checked})


MAX_LOGIT_BIAS = 1024  # token ids one request may bias (OpenAI takes 300)
MAX_TOP_LOGPROBS = 20  # OpenAI's bound on top_logprobs
_PER_REQUEST = ("grammar", "logit_bias", "logprobs", *_EXTRA)  # not kept with a chat


def check_logit_bias(pairs: tuple[tuple[int, float], ...]) -> None:
    """OpenAI's bounds: at most ``MAX_LOGIT_BIAS`` token ids, each biased by -100 (banned) to 100 (forced)."""
    if len(pairs) > MAX_LOGIT_BIAS:
        raise OptionError(f"logit_bias: at most {MAX_LOGIT_BIAS} tokens, not {len(pairs)}")
    for token, bias in pairs:
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise OptionError(f"logit_bias: keys must be token ids (0 or more), not {token!r}")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise OptionError(f"logit_bias: token {token}: the bias must be a number from -100 to 100, not {bias!r}")


@dataclass(frozen=True)
class Sampling:
    temperature: float = _SAMPLING["temperature"].default
    top_p: float = _SAMPLING["top_p"].default
    top_k: int = _SAMPLING["top_k"].default
    min_p: float = _SAMPLING["min_p"].default
    repeat_penalty: float = _SAMPLING["repeat_penalty"].default
    max_tokens: int = _SAMPLING["max_tokens"].default
    seed: int | None = None  # None: the load seed's generator continues
    presence_penalty: float = PENALTY_OPTIONS[0].default
    frequency_penalty: float = PENALTY_OPTIONS[1].default
    grammar: str | None = None  # GBNF text the reply must follow (core.llama.grammar); one request's, not a setting
    # (token id, bias added to its logit), as OpenAI's logit_bias; one request's too. The ids are checked against
    # the model's vocabulary where the model is known (the chat engine).
    logit_bias: tuple[tuple[int, float], ...] = ()
    # Each token's log-probability with this many alternatives (0 to MAX_TOP_LOGPROBS); None: not reported.
    logprobs: int | None = None
    typical_p: float = _EXTRA["typical_p"].default
    repeat_last_n: int = _EXTRA["repeat_last_n"].default
    mirostat: int = _EXTRA["mirostat"].default
    mirostat_tau: float = _EXTRA["mirostat_tau"].default
    mirostat_eta: float = _EXTRA["mirostat_eta"].default

    def __post_init__(self) -> None:
        checked = (*SAMPLING_OPTIONS, *PENALTY_OPTIONS, *EXTRA_SAMPLING_OPTIONS)
        check_all(checked, {o.name: getattr(self, o.name) for o in checked})
        if self.seed is not None:
            check_all((SEED,), {"seed": self.seed})
        check_logit_bias(self.logit_bias)
        if self.logprobs is not None and (isinstance(self.logprobs, bool) or not isinstance(self.logprobs, int)
                                          or not 0 <= self.logprobs <= MAX_TOP_LOGPROBS):
            raise OptionError(f"logprobs: the alternatives to each token must be a whole number from 0 to "
                              f"{MAX_TOP_LOGPROBS}, not {self.logprobs!r}")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _PER_REQUEST}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sampling:
        names = {f.name for f in fields(cls)} - set(_PER_REQUEST)
        return cls(**{k: v for k, v in data.items() if k in names})
