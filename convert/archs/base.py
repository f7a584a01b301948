"""What differs between architectures, as data plus two optional hooks; one small module per architecture."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gguf
import numpy as np

from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import METADATA_ROPE_TYPES, HParams, add_common, rope_type


def no_extra_tensors(config: dict, hp: HParams) -> list[tuple[str, np.ndarray]]:
    return []


@dataclass(frozen=True)
class Arch:
    name: str  # HF model_type
    hf_classes: tuple[str, ...]
    gguf_arch: gguf.MODEL_ARCH
    # HF stores q/k rows for rotate_half (NEOX) rope; llama.cpp's LLAMA arch rotates adjacent pairs, so the rows
    # of each head are interleaved back. Architectures that llama.cpp runs with NEOX rope keep them as they are.
    permute_qk: bool = False
    # Gemma's RMSNorm multiplies by (1 + weight); llama.cpp multiplies by the stored weight.
    norm_offset: float = 0.0
    add_space_prefix: bool | None = None  # for SentencePiece vocabularies only; None = llama.cpp's default
    # Extra keys beyond hparams.add_common (which runs first).
    metadata: Callable[[gguf.GGUFWriter, dict, HParams], None] | None = None
    # Tensors computed from the config (rope factors): (gguf name, float32 array).
    extra_tensors: Callable[[dict, HParams], list[tuple[str, np.ndarray]]] = no_extra_tensors
    # Rope types this architecture carries as tensors (llama.cpp loads rope_freqs / rope_factors_* only for some).
    tensor_rope_types: tuple[str, ...] = ()
    # The rotary dimension when not the whole head (partial rotary); None = head_dim.
    rope_dim: Callable[[HParams], int] | None = None

    @property
    def gguf_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def check_rope_type(self, hp: HParams) -> None:
        kind = rope_type(hp)
        if kind not in METADATA_ROPE_TYPES and kind not in self.tensor_rope_types:
            raise ConvertError(f"config.json: rope type {kind!r} is not supported for {self.name}")

    def write_metadata(self, writer: gguf.GGUFWriter, config: dict, hp: HParams) -> None:
        self.check_rope_type(hp)
        add_common(writer, hp, rope_dim=self.rope_dim(hp) if self.rope_dim is not None else None)
        if self.metadata is not None:
            self.metadata(writer, config, hp)


def swa_pattern(config: dict) -> list[bool] | None:
    """Which layers use sliding-window attention, from transformers' ``layer_types``."""
    layer_types = config.get("layer_types")
    if not isinstance(layer_types, list):
        return None
    return [t == "sliding_attention" for t in layer_types]
