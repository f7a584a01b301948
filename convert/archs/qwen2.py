"""Qwen2 / Qwen2.5: q/k/v biases, NEOX rope (no permutation)."""

from __future__ import annotations

import gguf

from tuillm.convert.archs.base import Arch

ARCH = Arch("qwen2", ("Qwen2ForCausalLM",), gguf.MODEL_ARCH.QWEN2)
