"""Quantized GGUF outputs: K-quants and the legacy block types through llama.cpp's own quantizer.

``convert`` is the one entry point for HF -> any type: f32/f16/bf16/q8_0 are written directly; the rest go
through an intermediate f16/bf16 file in the output folder that is removed afterwards.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import DIRECT_TYPES, ConvertProgress, ProgressFn, convert_hf
from tuillm.convert.output import atomic_output, temp_name

# tuillm type name -> llama.cpp LLAMA_FTYPE_* constant name.
LLAMA_FTYPES = {
    "f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
    "q2_k": "MOSTLY_Q2_K", "q3_k_s": "MOSTLY_Q3_K_S", "q3_k_m": "MOSTLY_Q3_K_M", "q3_k_l": "MOSTLY_Q3_K_L",
    "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1", "q4_k_s": "MOSTLY_Q4_K_S", "q4_k_m": "MOSTLY_Q4_K_M",
    "q5_0": "MOSTLY_Q5_0", "q5_1": "MOSTLY_Q5_1", "q5_k_s": "MOSTLY_Q5_K_S", "q5_k_m": "MOSTLY_Q5_K_M",
    "q6_k": "MOSTLY_Q6_K",
}
OUTPUT_TYPES = tuple(LLAMA_FTYPES)


def check_type(out_type: str) -> str:
    t = out_type.lower()
    if t not in LLAMA_FTYPES:
        raise ConvertError(f"unknown output type {out_type!r}; choose one of {', '.join(OUTPUT_TYPES)}")
    return t


def input_is_quantized(path: Path) -> bool:
    """Whether a GGUF's weights are already quantized (re-quantizing those compounds the error)."""
    import gguf

    try:
        field = gguf.GGUFReader(path).fields.get("general.file_type")
    except (OSError, ValueError):
        return False
    return field is not None and int(field.contents()) not in (0, 1, 32)  # f32, f16, bf16


def quantize_gguf(in_path: Path, out_path: Path, out_type: str, *, threads: int | None = None,
                  progress: ProgressFn | None = None) -> Path:
    """Re-quantize a GGUF file with llama.cpp (``llama_model_quantize``), writing through a temporary name.

    An already quantized input is accepted (llama.cpp dequantizes it first); expect some quality loss.
    """
    import llama_cpp  # loads the native library: only when quantizing

    out_type = check_type(out_type)
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise ConvertError(f"{in_path}: no such file")
    with in_path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ConvertError(f"{in_path}: not a GGUF file")
    if in_path.resolve() == out_path.resolve():
        raise ConvertError(f"{out_path}: output would overwrite the input")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{LLAMA_FTYPES[out_type]}")
    params.nthread = threads or (os.cpu_count() or 1)
    params.allow_requantize = True
    start = time.monotonic()
    size = in_path.stat().st_size
    if progress is not None:
        progress(ConvertProgress("quantize", 0, 1, 0, size, 0.0))
    with atomic_output(out_path, "quant") as tmp:
        # llama.cpp logs every tensor to stderr; keep the terminal for our own progress line.
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):
            rc = llama_cpp.llama_model_quantize(os.fsencode(in_path), os.fsencode(tmp), ctypes.byref(params))
        if rc != 0:
            raise ConvertError(f"{in_path}: llama.cpp could not quantize it to {out_type} (error {rc})")
    if progress is not None:
        progress(ConvertProgress("quantize", 1, 1, size, size, time.monotonic() - start))
    return out_path


def convert(folder: Path, out_path: Path, out_type: str = "f16", *, progress: ProgressFn | None = None,
            threads: int | None = None, intermediate: str | None = None) -> Path:
    """HF checkpoint folder -> GGUF of any supported type (see ``OUTPUT_TYPES``)."""
    out_type = check_type(out_type)
    out_path = Path(out_path)
    if out_type in DIRECT_TYPES:
        return convert_hf(folder, out_path, out_type, progress=progress, threads=threads)
    mid_type = intermediate or _intermediate_type(Path(folder))
    mid = temp_name(out_path, f"{mid_type}.gguf")
    try:
        convert_hf(folder, mid, mid_type, progress=progress, threads=threads)
        quantize_gguf(mid, out_path, out_type, threads=threads, progress=progress)
    finally:
        mid.unlink(missing_ok=True)
    return out_path


def _intermediate_type(folder: Path) -> str:
    """bf16 when the checkpoint is bf16 (lossless, and no f16 overflow), else f16."""
    from tuillm.convert.checkpoint import open_checkpoint

    tensors = open_checkpoint(folder).tensors.values()
    return "bf16" if any(t.dtype == "BF16" for t in tensors if len(t.shape) >= 2) else "f16"
