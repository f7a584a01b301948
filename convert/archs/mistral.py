"""Mistral (HF MistralForCausalLM): llama.cpp runs it as the llama architecture."""

from __future__ import annotations

import gguf

from tuillm.convert.archs.base import Arch
from tuillm.convert.archs.llama import rope_freqs
from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import HParams


def _metadata(writer: gguf.GGUFWriter, config: dict, hp: HParams) -> None:
    # Mistral 7B v0.1 used a 4096-token sliding window; the llama architecture has none, so it would be ignored.
    window = config.get("sliding_window")
    if window and window < hp.n_ctx:
        raise ConvertError(f"config.json: sliding_window {window} is not supported for mistral (llama.cpp has none)")


ARCH = Arch("mistral", ("MistralForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, metadata=_metadata,
            extra_tensors=rope_freqs, tensor_rope_types=("llama3",))
