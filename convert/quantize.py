"""Quantized GGUF outputs: K-quants and the legacy block types through llama.cpp's own quantizer.

``convert`` is the one entry point for HF -> any type: f32/f16/bf16/q8_0 are written directly; the rest go
through an intermediate f16/bf16 file in the output folder that is removed afterwards (``convert_many`` in
tuillm.core.conversion.job shares one intermediate between several outputs).

llama.cpp's quantizer runs in a child process: it has no progress callback and cannot be interrupted, so the
parent watches the output grow (progress) and kills the child on cancel.

``output_tensor_types`` predicts the type llama.cpp gives each tensor, so sizes are known before anything is
written (and the quantize progress can count tensors).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf

from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import DIRECT_TYPES, ConvertProgress, ProgressFn, _choose_type, _nbytes, convert_hf
from tuillm.convert.output import atomic_output, temp_name

Q = gguf.GGMLQuantizationType

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


# --- what llama.cpp's quantizer writes: the type of each tensor, hence the size -----------------------------------

# tuillm type -> the ggml type of the large tensors before llama.cpp's per-tensor adjustments.
BASE_TYPES = {
    "f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q2_k": Q.Q2_K, "q3_k_s": Q.Q3_K, "q3_k_m": Q.Q3_K,
    "q3_k_l": Q.Q3_K, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1, "q4_k_s": Q.Q4_K, "q4_k_m": Q.Q4_K, "q5_0": Q.Q5_0,
    "q5_1": Q.Q5_1, "q5_k_s": Q.Q5_K, "q5_k_m": Q.Q5_K, "q6_k": Q.Q6_K,
}
# A row that is not a whole number of 256-value K-quant blocks gets a 32-value block type of about the same size
# (what this llama.cpp build does; checked against real outputs in tests/core/test_convert_plan.py).
_K_FALLBACK = {Q.Q2_K: Q.Q4_0, Q.Q3_K: Q.Q4_0, Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}
GGUF_ALIGNMENT = 32


@dataclass(frozen=True, slots=True)
class TensorShape:
    """A tensor of a GGUF file (or of the one a checkpoint converts to)."""

    name: str  # GGUF name, e.g. "blk.0.attn_v.weight"
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    type: gguf.GGMLQuantizationType = Q.F32  # as stored in the source


def tensor_bytes(ne: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    """Bytes of a tensor of ``qtype`` in a GGUF file, with the alignment padding that follows it."""
    nbytes = _nbytes(ne, qtype)
    return nbytes + (-nbytes % GGUF_ALIGNMENT)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def output_tensor_types(tensors: list[TensorShape], out_type: str, *, n_gqa: int = 1,
                        direct: bool = False) -> list[gguf.GGMLQuantizationType]:
    """The type of each tensor in the output of ``out_type``.

    ``direct``: written by our converter from an HF checkpoint (f32/f16/bf16/q8_0 only). Otherwise the rules of
    llama.cpp's ``llama_tensor_get_type`` for the types offered here and dense models: the output head (or the
    tied embedding) gets more bits, the *_M and *_L variants give more bits to some attn_v/ffn_down/attn_output
    tensors, and rows that do not split into K-quant blocks fall back to a 32-value block type.
    """
    out_type = check_type(out_type)
    base = BASE_TYPES[out_type]
    if direct:
        if out_type not in DIRECT_TYPES:
            raise ConvertError(f"output type {out_type!r} is not written directly")
        return [_choose_type(t.name, tuple(reversed(t.ne)), base) for t in tensors]
    has_output = any(t.name == "output.weight" for t in tensors)
    n_v = sum(1 for t in tensors if "attn_v.weight" in t.name)
    n_down = sum(1 for t in tensors if "ffn_down" in t.name)
    i_v = i_down = 0
    types = []
    for t in tensors:
        if not (t.name.endswith("weight") and len(t.ne) >= 2 and not t.name.endswith("_norm.weight")):
            types.append(t.type)  # llama.cpp copies these (norms, biases, 1-D tensors) as they are
            continue
        new = base
        if base in (Q.F32, Q.F16, Q.BF16):
            types.append(new)
            continue
        name = t.name
        if name == "output.weight" or (not has_output and name == "token_embd.weight"):
            if t.ne[0] % gguf.GGML_QUANT_SIZES[new][0] != 0:
                new = Q.Q8_0
            elif new != Q.Q8_0:
                new = Q.Q6_K
        elif "attn_v.weight" in name:
            if out_type == "q2_k":
                new = Q.Q4_K if n_gqa >= 4 else Q.Q3_K
            elif out_type == "q3_k_m":
                new = Q.Q5_K if i_v < 2 else Q.Q4_K
            elif out_type == "q3_k_l":
                new = Q.Q5_K
            elif out_type in ("q4_k_m", "q5_k_m") and _use_more_bits(i_v, n_v):
                new = Q.Q6_K
            elif out_type == "q4_k_s" and i_v < 4:
                new = Q.Q5_K
            i_v += 1
        elif "ffn_down" in name:
            if out_type == "q2_k":
                new = Q.Q3_K
            elif out_type == "q3_k_m":
                new = Q.Q5_K if i_down < n_down // 16 else Q.Q4_K
            elif out_type == "q3_k_l":
                new = Q.Q5_K
            elif out_type in ("q4_k_m", "q5_k_m") and _use_more_bits(i_down, n_down):
                new = Q.Q6_K
            elif out_type == "q4_k_s" and i_down < n_down // 8:
                new = Q.Q5_K
            i_down += 1
        elif "attn_output.weight" in name:
            new = {"q2_k": Q.Q3_K, "q3_k_m": Q.Q4_K, "q3_k_l": Q.Q5_K}.get(out_type, new)
        elif "attn_qkv.weight" in name:
            new = {"q3_k_m": Q.Q4_K, "q3_k_l": Q.Q4_K, "q4_k_m": Q.Q5_K, "q5_k_m": Q.Q6_K}.get(out_type, new)
        if t.ne[0] % gguf.GGML_QUANT_SIZES[new][0] != 0:
            new = _K_FALLBACK.get(new, Q.F16)
            if t.ne[0] % gguf.GGML_QUANT_SIZES[new][0] != 0:
                new = Q.F16
        types.append(new)
    return types


def gguf_tensors(path: Path) -> tuple[list[TensorShape], int, int]:
    """A GGUF file's tensors, its GQA factor (heads per KV head) and the bytes before its tensor data.

    Reads the header only (the vocabulary arrays are skipped, not parsed): fast even for a large file.
    """
    from tuillm.convert.gguf_header import GGUFHeaderError, read_gguf_header

    try:
        header = read_gguf_header(path)
    except GGUFHeaderError as exc:
        raise ConvertError(f"{path}: {exc}") from None
    arch = header.fields.get("general.architecture", "")

    def number(key: str) -> int:
        value = header.fields.get(f"{arch}.{key}", 0)
        if isinstance(value, list):  # per-layer values (some architectures): the first layer's
            value = value[0] if value else 0
        return int(value) if isinstance(value, int | float) else 0

    n_head, n_kv = number("attention.head_count"), number("attention.head_count_kv")
    unknown = next((t for t in header.tensors if t.type_name not in Q.__members__), None)
    if unknown is not None:
        raise ConvertError(f"{path}: tensor {unknown.name} has a type this version cannot read ({unknown.type_name})")
    tensors = [TensorShape(t.name, tuple(t.shape), Q[t.type_name]) for t in header.tensors]
    return tensors, (n_head // n_kv if n_head and n_kv else 1), header.data_offset


def hf_tensors(folder: Path) -> tuple[list[TensorShape], int]:
    """The tensors the converter writes for an HF checkpoint (from its headers only) and the GQA factor."""
    from tuillm.convert.archs import find_arch
    from tuillm.convert.checkpoint import open_checkpoint
    from tuillm.convert.hf_to_gguf import _embedding_rows, _plan
    from tuillm.convert.hparams import read_hparams

    ck = open_checkpoint(Path(folder))
    arch = find_arch(ck.config)
    hp = read_hparams(ck.config, _embedding_rows(ck))
    plan = _plan(ck, arch, hp, Q.F32)
    tensors = [TensorShape(p.gguf_name, tuple(reversed(p.shape))) for p in plan]
    return tensors, (hp.n_head // hp.n_head_kv if hp.n_head_kv else 1)


def input_is_quantized(path: Path) -> bool:
    """Whether a GGUF's weights are already quantized (re-quantizing those compounds the error)."""
    from tuillm.convert.gguf_header import read_gguf_header

    try:  # the header only: gguf.GGUFReader would parse the whole vocabulary (seconds)
        file_type = read_gguf_header(path).fields.get("general.file_type")
    except (OSError, ValueError):
        return False
    return isinstance(file_type, int) and file_type not in (0, 1, 32)  # f32, f16, bf16


def quantize_gguf(in_path: Path, out_path: Path, out_type: str, *, threads: int | None = None,
                  progress: ProgressFn | None = None) -> Path:
    """Re-quantize a GGUF file with llama.cpp (``llama_model_quantize``), writing through a temporary name.

    An already quantized input is accepted (llama.cpp dequantizes it first); expect some quality loss.
    ``progress`` is called about 5 times a second with the tensors written so far (counted from the file's
    growth against the predicted tensor sizes); an exception it raises (a cancel) stops the quantizer at once.
    """
    out_type = check_type(out_type)
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise ConvertError(f"{in_path}: no such file")
    if in_path.resolve() == out_path.resolve():
        raise ConvertError(f"{out_path}: output would overwrite the input")
    try:  # also refuses a file that is not a GGUF
        tensors, n_gqa, header = gguf_tensors(in_path)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{in_path}: unreadable GGUF ({exc.__class__.__name__})") from None
    types = output_tensor_types(tensors, out_type, n_gqa=n_gqa)
    # In the order llama.cpp writes them (by layer, then by name), so the file's size tells how many are done.
    order = sorted(range(len(tensors)), key=lambda i: _write_order(tensors[i].name))
    sizes = [tensor_bytes(tensors[i].ne, types[i]) for i in order]
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    total = ends[-1] if ends else 0
    start = time.monotonic()

    def report(written: int) -> None:
        if progress is not None:
            written = min(max(written, 0), total)
            done = len(sizes) if written >= total else bisect_right(ends, written)
            progress(ConvertProgress("quantize", done, len(sizes), written, total, time.monotonic() - start))

    report(0)
    with atomic_output(out_path, "quant") as tmp:
        rc, detail = _run_quantizer(in_path, tmp, out_type, threads or (os.cpu_count() or 1),
                                    lambda: report(_size(tmp) - header))
        if rc != 0:
            raise ConvertError(f"{in_path}: llama.cpp could not quantize it to {out_type} (error {rc}{detail})")
    report(total)
    return out_path


def _write_order(name: str) -> tuple[int, str]:
    m = re.match(r"blk\.(\d+)\.", name)
    return (int(m.group(1)) if m else -1, name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _run_quantizer(in_path: Path, tmp: Path, out_type: str, threads: int, poll: Callable[[], None]) -> tuple[int, str]:
    """Run llama.cpp's quantizer in a child process, calling ``poll`` while it works; (exit code, last error line).

    llama.cpp logs every tensor to stderr: it goes to a temporary file, so the terminal keeps our own progress.
    """
    argv = [sys.executable, "-m", "tuillm.convert.quantize", os.fspath(in_path), os.fspath(tmp), out_type,
            str(threads)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    poll()
        finally:
            if proc.poll() is None:  # cancelled (or interrupted): stop the quantizer now
                proc.kill()
                proc.wait()
        if rc == 0:
            return 0, ""
        log.seek(0)
        lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "exception" in line.lower()]
        last = (errors or lines or [""])[-1]
        return rc, f": {last[:200]}" if last else ""


def _quantize_in_this_process(in_path: str, out_path: str, out_type: str, threads: str) -> int:
    """The child's side of ``_run_quantizer``."""
    import ctypes

    import llama_cpp  # loads the native library: only in the child

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{LLAMA_FTYPES[out_type]}")
    params.nthread = int(threads)
    params.allow_requantize = True
    return int(llama_cpp.llama_model_quantize(os.fsencode(in_path), os.fsencode(out_path), ctypes.byref(params)))


def convert(folder: Path, out_path: Path, out_type: str = "f16", *, progress: ProgressFn | None = None,
            threads: int | None = None) -> Path:
    """HF checkpoint folder -> GGUF of any supported type (see ``OUTPUT_TYPES``)."""
    out_type = check_type(out_type)
    out_path = Path(out_path)
    if out_type in DIRECT_TYPES:
        return convert_hf(folder, out_path, out_type, progress=progress, threads=threads)
    mid_type = intermediate_type(Path(folder))
    mid = temp_name(out_path, f"{mid_type}.gguf")
    try:
        convert_hf(folder, mid, mid_type, progress=progress, threads=threads)
        quantize_gguf(mid, out_path, out_type, threads=threads, progress=progress)
    finally:
        mid.unlink(missing_ok=True)
    return out_path


def intermediate_type(folder: Path) -> str:
    """bf16 when the checkpoint is bf16 (lossless, and no f16 overflow), else f16."""
    from tuillm.convert.checkpoint import open_checkpoint

    tensors = open_checkpoint(folder).tensors.values()
    return "bf16" if any(t.dtype == "BF16" for t in tensors if len(t.shape) >= 2) else "f16"


if __name__ == "__main__":  # the quantizer's child process (see _run_quantizer)
    sys.exit(_quantize_in_this_process(*sys.argv[1:5]))
