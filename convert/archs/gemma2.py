"""Gemma 2: norms stored as (scale - 1), logit soft-capping, alternating sliding-window layers."""

from __future__ import annotations

import gguf

from tuillm.convert.archs.base import Arch, swa_pattern
from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import HParams


def gemma2_metadata(writer: gguf.GGUFWriter, config: dict, hp: HParams) -> None:
    if hp.head_dim == hp.n_embd // hp.n_head:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    # llama.cpp scales queries by 1/sqrt(head_dim) (1/sqrt(hidden/heads) only for the 27B it recognises).
    scalar = config.get("query_pre_attn_scalar")
    if scalar is not None and scalar not in (hp.head_dim, hp.n_embd // hp.n_head):
        raise ConvertError(f"config.json: query_pre_attn_scalar {scalar} is not supported by llama.cpp")
    if config.get("attn_logit_softcapping"):
        writer.add_attn_logit_softcapping(float(config["attn_logit_softcapping"]))
    if config.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    if config.get("sliding_window"):
        writer.add_sliding_window(int(config["sliding_window"]))
    if (pattern := swa_pattern(config)) is not None:
        writer.add_sliding_window_pattern(pattern)


ARCH = Arch("gemma2", ("Gemma2ForCausalLM",), gguf.MODEL_ARCH.GEMMA2, norm_offset=1.0, add_space_prefix=False,
            metadata=gemma2_metadata)
