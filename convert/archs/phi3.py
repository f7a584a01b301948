"""Phi-3 / Phi-4-mini: fused qkv and gate_up projections (kept fused), partial rotary, longrope factors."""

from __future__ import annotations

import math

import gguf
import numpy as np

from tuillm.convert.archs.base import Arch
from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import HParams, rope_type


def _rope_dim(hp: HParams) -> int:
    return int(float(hp.rope.get("partial_rotary_factor", 1.0)) * hp.n_embd) // hp.n_head


def _metadata(writer: gguf.GGUFWriter, config: dict, hp: HParams) -> None:
    orig = int(hp.rope.get("original_max_position_embeddings") or hp.n_ctx)
    if rope_type(hp) != "yarn":  # YaRN writes its own
        writer.add_rope_scaling_orig_ctx_len(orig)
    # 0 = no sliding window (what llama.cpp expects from Phi-4-style configs without one).
    writer.add_sliding_window(int(config.get("sliding_window") or 0))
    if rope_type(hp) in ("longrope", "su") and hp.rope.get("long_factor"):
        # As transformers' _compute_longrope_parameters: an explicit attention_factor wins; else it follows the
        # scaling factor (explicit, or the ratio of the context lengths). llama.cpp multiplies cos/sin by it.
        attn = hp.rope.get("attention_factor")
        if attn is None:
            factor = float(hp.rope.get("factor") or hp.n_ctx / orig)
            attn = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1.0 else 1.0
        writer.add_rope_scaling_attn_factors(float(attn))


def _rope_factors(config: dict, hp: HParams) -> list[tuple[str, np.ndarray]]:
    long, short = hp.rope.get("long_factor"), hp.rope.get("short_factor")
    if not long:
        return []
    if not short or len(long) != len(short) or len(long) != _rope_dim(hp) // 2:
        raise ConvertError("config.json: rope long_factor/short_factor do not match the rotary dimension")
    return [("rope_factors_long.weight", np.asarray(long, np.float32)),
            ("rope_factors_short.weight", np.asarray(short, np.float32))]


ARCH = Arch("phi3", ("Phi3ForCausalLM",), gguf.MODEL_ARCH.PHI3, metadata=_metadata, extra_tensors=_rope_factors,
            tensor_rope_types=("longrope", "su"), rope_dim=_rope_dim)
