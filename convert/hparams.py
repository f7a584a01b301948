"""Hyper-parameters shared by the decoder-only architectures: read from config.json, written as GGUF keys.

Handles transformers 5 ``rope_parameters`` (flat, or per layer type as Gemma 3 has it) and the legacy
``rope_theta``/``rope_scaling`` keys, GQA, an explicit ``head_dim``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gguf
import numpy as np

from tuillm.convert.errors import ConvertError


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
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (hp.rope_theta ** (np.arange(0, hp.head_dim, 2, dtype=np.float64) / hp.head_dim))
    wavelen = 2 * np.pi / freqs
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    smooth = (old_ctx / wavelen - low) / (high - low)
    out = np.where(wavelen < high_wavelen, 1.0,
                   np.where(wavelen > low_wavelen, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)
