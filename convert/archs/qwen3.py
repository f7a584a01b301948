"""Qwen3: per-head q/k RMSNorm, explicit head_dim, NEOX rope (no permutation)."""

from __future__ import annotations

import gguf

from tuillm.convert.archs.base import Arch
from tuillm.convert.hparams import HParams


def _metadata(writer: gguf.GGUFWriter, config: dict, hp: HParams) -> None:
    # llama.cpp's qwen3 reads key/value length even when head_dim happens to equal hidden/heads.
    if hp.head_dim == hp.n_embd // hp.n_head:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)


ARCH = Arch("qwen3", ("Qwen3ForCausalLM",), gguf.MODEL_ARCH.QWEN3, metadata=_metadata)
