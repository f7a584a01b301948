"""Tensor-level GGUF facts shared by the writers and the size predictions: the gguf enums of each output type,
a tensor's bytes in a file, the directly written types' per-tensor choice, and the q/k rope permutation.

The output types themselves are declared in ``types`` (no gguf import there); their gguf enums are looked up
here by the registry's names, so a type is never spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import numpy as np

from tuillm.convert.types import OUTPUT_TYPES, check_type

Q = gguf.GGMLQuantizationType
GGUF_ALIGNMENT = 32


def ggml_type(out_type: str) -> gguf.GGMLQuantizationType:
    """The type of the large tensors of ``out_type`` (before llama.cpp's per-tensor adjustments)."""
    return Q[OUTPUT_TYPES[check_type(out_type)].ggml]


def file_type(out_type: str) -> gguf.LlamaFileType:
    """The ``general.file_type`` of a GGUF of ``out_type``."""
    return gguf.LlamaFileType[OUTPUT_TYPES[check_type(out_type)].ftype]


@dataclass(frozen=True, slots=True)
class TensorShape:
    """A tensor of a GGUF file (or of the one a checkpoint converts to)."""

    name: str  # GGUF name, e.g. "blk.0.attn_v.weight"
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    type: gguf.GGMLQuantizationType = Q.F32  # as stored in the source


def nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    """Bytes of the data of a tensor of ``shape`` encoded as ``qtype`` (no padding)."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape, dtype=np.int64))
    return n // block * type_size


def tensor_bytes(ne: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    """Bytes of a tensor of ``qtype`` in a GGUF file, with the alignment padding that follows it."""
    size = nbytes(ne, qtype)
    return size + (-size % GGUF_ALIGNMENT)


def direct_tensor_type(gguf_name: str, shape: tuple[int, ...], out: gguf.GGMLQuantizationType) -> Q:
    """The type our converter writes a tensor in for an output of type ``out`` (``shape`` in HF order)."""
    # 1-D tensors and norms stay f32 (llama.cpp computes them in f32; they are tiny).
    if len(shape) < 2 or gguf_name.endswith("_norm.weight") or out == Q.F32:
        return Q.F32
    if out == Q.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] != 0:
        return Q.F16
    return out


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Interleave the two rotary halves of each head's rows (HF rotate_half layout -> llama.cpp's)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
