"""Hyper-parameters shared by the decoder-only architectures: read from config.json, written as GGUF keys.

Handles transformers 5 ``rope_parameters`` (flat, or per layer type as Gemma 3 has it) and the legacy
``rope_theta``/``rope_scaling`` keys, GQA, an explicit ``head_dim``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import gguf
import numpy as np

from tuillm.convert.errors import ConvertError

# What config.json may hold, checked once when it is read (``checkpoint.read_config``). Counts are stored in GGUF
# as uint32, the context as llama.cpp's int32, the layers at most llama.cpp's LLAMA_MAX_LAYERS. null is "unset".
UINT32_MAX, INT32_MAX, LLAMA_MAX_LAYERS = 2**32 - 1, 2**31 - 1, 512
_COUNTS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, UINT32_MAX), "num_attention_heads": (1, UINT32_MAX), "num_key_value_heads": (1, UINT32_MAX),
    "intermediate_size": (1, UINT32_MAX), "head_dim": (1, UINT32_MAX), "vocab_size": (1, UINT32_MAX),
    "num_hidden_layers": (1, LLAMA_MAX_LAYERS), "max_position_embeddings": (1, INT32_MAX),
    "original_max_position_embeddings": (1, INT32_MAX), "sliding_window": (0, INT32_MAX),
    "sliding_window_pattern": (0, LLAMA_MAX_LAYERS),
}
# Finite numbers: (lowest, whether the lowest itself is allowed).
_NUMBERS: dict[str, tuple[float, bool]] = {
    "rms_norm_eps": (0.0, True), "rope_theta": (0.0, False), "rope_local_base_freq": (0.0, False),
    "partial_rotary_factor": (0.0, False), "attn_logit_softcapping": (0.0, True),
    "final_logit_softcapping": (0.0, True), "query_pre_attn_scalar": (0.0, False), "factor": (0.0, False),
    "attention_factor": (0.0, False), "beta_fast": (0.0, False), "beta_slow": (0.0, False), "mscale": (0.0, True),
    "mscale_all_dim": (0.0, True), "low_freq_factor": (0.0, False), "high_freq_factor": (0.0, False),
}
_STRINGS = ("model_type", "rope_type", "type")
_STRING_LISTS = ("architectures", "layer_types")
_BOOLS = ("tie_word_embeddings", "truncate")
_NUMBER_LISTS = ("long_factor", "short_factor")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _check_key(key: str, value: object, where: str) -> None:
    if value is None:
        return
    bad = None
    if key in _COUNTS:
        lo, hi = _COUNTS[key]
        if not _is_int(value) or not lo <= value <= hi:  # type: ignore[operator]
            bad = f"an integer from {lo} to {hi}"
    elif key in _NUMBERS:
        lo, inclusive = _NUMBERS[key]
        if not _is_number(value) or (value < lo if inclusive else value <= lo):  # type: ignore[operator]
            bad = f"a finite number {'>=' if inclusive else '>'} {lo:g}"
    elif key in _STRINGS and not isinstance(value, str):
        bad = "a string"
    elif key in _BOOLS and not isinstance(value, bool):
        bad = "true or false"
    elif key in _STRING_LISTS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        bad = "a list of strings"
    elif key in _NUMBER_LISTS and not (isinstance(value, list) and all(_is_number(v) for v in value)):
        bad = "a list of finite numbers"
    if bad is not None:
        raise ConvertError(f"{where}{key} = {json_shown(value)} is not {bad}")


def json_shown(value: object) -> str:
    """A JSON value from a file, for a one-line message: compact, cut at 40 characters."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except RecursionError:  # as deep as the parser allows: shown by its type only
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_rope(config: dict, where: str) -> None:
    for key in ("rope_parameters", "rope_scaling"):
        params = config.get(key)
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ConvertError(f"{where}{key} is not an object")
        parts = [(f"{key}.{k}", v) for k, v in params.items() if k in ("full_attention", "sliding_attention")]
        for name, part in parts or [(key, params)]:
            if part is not None and not isinstance(part, dict):
                raise ConvertError(f"{where}{name} is not an object")
            for k, v in (part or {}).items():
                _check_key(k, v, f"{where}{name}.")


def check_config(config: dict) -> None:
    """Types and ranges of the config.json keys the converter and the metadata reader use (also inside a
    multimodal ``text_config``), and that heads fit the hidden size; a one-line ConvertError naming the key."""
    text = config.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise ConvertError("text_config is not an object")
    for part, where in ((config, ""), (text or {}, "text_config.")):
        for key, value in part.items():
            _check_key(key, value, where)
        _check_rope(part, where)
    merged = {**config, **(text or {})}
    heads, kv_heads = merged.get("num_attention_heads"), merged.get("num_key_value_heads")
    hidden = merged.get("hidden_size")
    if heads and hidden and merged.get("head_dim") is None and heads > hidden:
        raise ConvertError(f"num_attention_heads = {heads} exceeds hidden_size = {hidden}")
    rotary = merged.get("partial_rotary_factor")
    if _is_number(rotary) and rotary > 1:  # more rotary dimensions than a head has: llama.cpp reads past the head
        raise ConvertError(f"partial_rotary_factor = {json_shown(rotary)} is not a fraction of the head (0 to 1)")
    if heads and kv_heads and heads % kv_heads:
        raise ConvertError(f"num_attention_heads = {heads} is not a multiple of num_key_value_heads = {kv_heads}")


def _get(config: dict, *keys: str, default=None):  # noqa: ANN001, ANN202 - JSON values
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


@dataclass
class HParams:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rms_eps: float
    vocab_size: int
    tied: bool
    rope: dict = field(default_factory=dict)  # the full-attention rope parameters, normalised
    rope_swa: dict = field(default_factory=dict)  # sliding-attention layers' own, if any

    @property
    def rope_theta(self) -> float:
        return float(self.rope.get("rope_theta", 10000.0))


def rope_parameters(config: dict) -> tuple[dict, dict]:
    """(full-attention rope params, sliding-attention rope params) from either config style."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    params = dict(params)
    if "full_attention" in params or "sliding_attention" in params:
        full = dict(params.get("full_attention") or {})
        swa = dict(params.get("sliding_attention") or {})
    else:
        full, swa = params, {}
    if "rope_type" not in full and "type" in full:  # legacy rope_scaling spelling
        full["rope_type"] = full["type"]
    if "rope_theta" not in full and config.get("rope_theta") is not None:
        full["rope_theta"] = config["rope_theta"]
    if not swa and config.get("rope_local_base_freq") is not None:
        swa = {"rope_theta": config["rope_local_base_freq"]}
    if "partial_rotary_factor" not in full and config.get("partial_rotary_factor") is not None:
        full["partial_rotary_factor"] = config["partial_rotary_factor"]
    # transformers gives a top-level original_max_position_embeddings (Phi-3 style) priority over the rope dict's.
    if config.get("original_max_position_embeddings") is not None:
        full["original_max_position_embeddings"] = config["original_max_position_embeddings"]
    return full, swa


def read_hparams(config: dict, embedding_rows: int) -> HParams:
    try:
        n_embd = int(config["hidden_size"])
        n_head = int(config["num_attention_heads"])
        hp = HParams(
            n_layer=int(config["num_hidden_layers"]),
            n_embd=n_embd,
            n_ff=int(config["intermediate_size"]),
            n_head=n_head,
            n_head_kv=int(_get(config, "num_key_value_heads", default=n_head)),
            head_dim=int(_get(config, "head_dim", default=n_embd // n_head)),
            n_ctx=int(_get(config, "max_position_embeddings", default=4096)),
            rms_eps=float(_get(config, "rms_norm_eps", default=1e-6)),
            vocab_size=embedding_rows,
            tied=bool(config.get("tie_word_embeddings", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConvertError(f"config.json: missing or bad hyper-parameter {exc}") from None
    hp.rope, hp.rope_swa = rope_parameters(config)
    return hp


def add_common(writer: gguf.GGUFWriter, hp: HParams, rope_dim: int | None = None) -> None:
    """The keys every architecture here needs, plus rope scaling."""
    writer.add_context_length(hp.n_ctx)
    writer.add_embedding_length(hp.n_embd)
    writer.add_block_count(hp.n_layer)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_rope_dimension_count(rope_dim if rope_dim is not None else hp.head_dim)
    writer.add_vocab_size(hp.vocab_size)
    if hp.head_dim != hp.n_embd // hp.n_head:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    add_rope_scaling(writer, hp)


# Rope types carried by metadata alone; llama3 and longrope also need per-frequency tensors, which only some
# architectures load (Arch.tensor_rope_types).
METADATA_ROPE_TYPES = ("default", "linear", "yarn", "dynamic")


def rope_type(hp: HParams) -> str:
    return str(hp.rope.get("rope_type", "default")).lower()


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def add_rope_scaling(writer: gguf.GGUFWriter, hp: HParams) -> None:
    """The scaling keys of linear and YaRN rope; the type was checked first (``Arch.check_rope_type``).

    Nothing for the others: llama3/longrope are carried by extra tensors (see llama3_rope_factors / the phi3
    module), and dynamic NTK is applied at run time by transformers only (llama.cpp runs it unscaled).
    """
    kind = rope_type(hp)
    factor = hp.rope.get("factor")
    if kind == "linear" and factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    elif kind == "yarn":
        _add_yarn(writer, hp)


def _add_yarn(writer: gguf.GGUFWriter, hp: HParams) -> None:
    """YaRN as transformers computes it (modeling_rope_utils._compute_yarn_parameters), in llama.cpp's terms."""
    rope = hp.rope
    orig = int(rope.get("original_max_position_embeddings") or hp.n_ctx)
    factor = float(rope.get("factor") or hp.n_ctx / orig)  # transformers: no factor = the context ratio
    # llama.cpp computes the correction range itself with beta 32/1, rounded outwards, and does not read the
    # yarn_beta_* keys for the architectures here: other values would run a different model, so refuse them.
    betas = (float(rope.get("beta_fast") or 32), float(rope.get("beta_slow") or 1))
    if betas != (32.0, 1.0):
        raise ConvertError(f"config.json: YaRN beta_fast/beta_slow {betas[0]:g}/{betas[1]:g} are not supported "
                           "(llama.cpp runs these architectures with 32/1)")
    if rope.get("truncate") is False:
        raise ConvertError("config.json: YaRN with truncate=false is not supported (llama.cpp always truncates)")
    writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    writer.add_rope_scaling_factor(factor)
    writer.add_rope_scaling_orig_ctx_len(orig)
    # transformers scales cos/sin by attention_factor (default mscale(factor)); llama.cpp applies mscale(factor)
    # itself and multiplies by rope.scaling.attn_factor, so that key carries the ratio, when there is one.
    attention = rope.get("attention_factor")
    if attention is None:
        mscale, mscale_all_dim = rope.get("mscale"), rope.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention = _yarn_mscale(factor, float(mscale)) / _yarn_mscale(factor, float(mscale_all_dim))
        else:
            attention = _yarn_mscale(factor)
    ratio = float(attention) / _yarn_mscale(factor)
    if abs(ratio - 1.0) > 1e-6:
        writer.add_rope_scaling_attn_factors(ratio)


def llama3_rope_factors(hp: HParams) -> np.ndarray | None:
    """The per-frequency divisors Llama 3.1+ applies (rope_type llama3), as llama.cpp's rope_freqs tensor."""
    if rope_type(hp) != "llama3":
        return None
    rope = hp.rope
    factor = float(rope.get("factor", 8.0))
    low = float(rope.get("low_freq_factor", 1.0))
    high = float(rope.get("high_freq_factor", 4.0))
    if high <= low:  # the smoothing below divides by their difference
        raise ConvertError(f"config.json: llama3 rope high_freq_factor {high:g} is not above low_freq_factor {low:g}")
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (hp.rope_theta ** (np.arange(0, hp.head_dim, 2, dtype=np.float64) / hp.head_dim))
    wavelen = 2 * np.pi / freqs
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    smooth = (old_ctx / wavelen - low) / (high - low)
    out = np.where(wavelen < high_wavelen, 1.0,
                   np.where(wavelen > low_wavelen, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)
