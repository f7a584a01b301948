"""Llama (SmolLM2, Llama 2/3 style): q/k rows permuted for llama.cpp's rope; Llama 3.1 rope factors."""

from __future__ import annotations

import gguf
import numpy as np

from tuillm.convert.archs.base import Arch
from tuillm.convert.hparams import HParams, llama3_rope_factors


def rope_freqs(config: dict, hp: HParams) -> list[tuple[str, np.ndarray]]:
    factors = llama3_rope_factors(hp)
    return [] if factors is None else [("rope_freqs.weight", factors)]


ARCH = Arch("llama", ("LlamaForCausalLM",), gguf.MODEL_ARCH.LLAMA, permute_qk=True, extra_tensors=rope_freqs,
            tensor_rope_types=("llama3",))
