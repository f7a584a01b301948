"""Gemma 3 (text): norms stored as (scale - 1), q/k norms, local layers with their own rope base."""

from __future__ import annotations

import gguf

from tuillm.convert.archs.base import Arch, swa_pattern
from tuillm.convert.archs.gemma2 import gemma2_metadata
from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import HParams


def _metadata(writer: gguf.GGUFWriter, config: dict, hp: HParams) -> None:
    if config.get("attn_logit_softcapping"):
        # llama.cpp's gemma3 has no attention soft-capping; converting would change the model silently.
        raise ConvertError("config.json: attn_logit_softcapping is not supported for gemma3")
    gemma2_metadata(writer, config, hp)
    if hp.rope_swa.get("rope_theta") is not None:
        writer.add_rope_freq_base_swa(float(hp.rope_swa["rope_theta"]))
    if swa_pattern(config) is None and config.get("sliding_window_pattern"):
        writer.add_sliding_window_pattern(int(config["sliding_window_pattern"]))


ARCH = Arch("gemma3_text", ("Gemma3ForCausalLM",), gguf.MODEL_ARCH.GEMMA3, norm_offset=1.0,
            add_space_prefix=False, metadata=_metadata)
