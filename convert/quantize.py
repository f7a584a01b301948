"""Quantized GGUF outputs: K-quants and the legacy block types through llama.cpp's own quantizer.

The types llama.cpp writes are made from an f16/bf16 GGUF (``intermediate_type`` says which);
``convert_many`` in tuillm.core.conversion.job is the one orchestrator that writes it and quantizes from it.

llama.cpp's quantizer runs in a child process: it has no progress callback and cannot be interrupted, so the
parent watches the output grow (progress) and kills the child on cancel, an interrupt or a signal. The child never
outlives the parent, even one killed outright: it ends itself when its parent is gone.

``output_tensor_types`` predicts the type llama.cpp gives each tensor, so sizes are known before anything is
written (and the quantize progress can count tensors).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path

import gguf

from tuillm.convert.errors import ConvertError
from tuillm.convert.output import atomic_output, check_output
from tuillm.convert.progress import ConvertProgress, ProgressFn
from tuillm.convert.tensors import Q, TensorShape, direct_tensor_type, ggml_type, tensor_bytes
from tuillm.convert.types import OUTPUT_TYPES, UNQUANTIZED_TYPE_NAMES, check_type

# A row that is not a whole number of 256-value K-quant blocks gets a 32-value block type of about the same size
# (what this llama.cpp build does; checked against real outputs in tests/core/conversion/test_plan.py).
_K_FALLBACK = {Q.Q2_K: Q.Q4_0, Q.Q3_K: Q.Q4_0, Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}


def output_tensor_types(tensors: list[TensorShape], out_type: str, *, n_gqa: int = 1,
                        direct: bool = False) -> list[gguf.GGMLQuantizationType]:
    """The type of each tensor in the output of ``out_type``.

    ``direct``: written by our converter from an HF checkpoint (f32/f16/bf16/q8_0 only). Otherwise the rules of
    llama.cpp's ``llama_tensor_get_type`` for the types offered here and dense models (see ``_LlamaCppRules``).
    """
    out_type = check_type(out_type)
    base = ggml_type(out_type)
    if direct:
        if not OUTPUT_TYPES[out_type].direct:
            raise ConvertError(f"output type {out_type!r} is not written directly")
        return [direct_tensor_type(t.name, tuple(reversed(t.ne)), base) for t in tensors]
    rules = _LlamaCppRules(out_type, base, tensors, n_gqa) if OUTPUT_TYPES[out_type].quantized else None
    types = []
    for t in tensors:
        if not (t.name.endswith("weight") and len(t.ne) >= 2 and not t.name.endswith("_norm.weight")):
            types.append(t.type)  # llama.cpp copies these (norms, biases, 1-D tensors) as they are
        else:
            types.append(base if rules is None else rules.type_of(t))
    return types


def _block(qtype: gguf.GGMLQuantizationType) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][0]


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class _LlamaCppRules:
    """llama.cpp's choice of type for each quantizable weight, in file order: the output head (or the tied
    embedding) gets more bits, the *_M and *_L variants give more bits to some attn_v/ffn_down/attn_output
    tensors (by layer index: llama.cpp counts them as it goes, so this is stateful), and rows that do not split
    into K-quant blocks fall back to a 32-value block type."""

    def __init__(self, out_type: str, base: Q, tensors: list[TensorShape], n_gqa: int) -> None:
        self.out_type, self.base, self.n_gqa = out_type, base, n_gqa
        self.has_output = any(t.name == "output.weight" for t in tensors)
        self.n_v = sum(1 for t in tensors if "attn_v.weight" in t.name)
        self.n_down = sum(1 for t in tensors if "ffn_down" in t.name)
        self.i_v = self.i_down = 0

    def type_of(self, t: TensorShape) -> Q:
        new = self._bumped(t.name, t.ne[0])
        if t.ne[0] % _block(new) != 0:
            new = _K_FALLBACK.get(new, Q.F16)
            if t.ne[0] % _block(new) != 0:
                new = Q.F16
        return new

    def _bumped(self, name: str, row: int) -> Q:
        out_type, base = self.out_type, self.base
        if name == "output.weight" or (not self.has_output and name == "token_embd.weight"):
            if row % _block(base) != 0:
                return Q.Q8_0
            return base if base == Q.Q8_0 else Q.Q6_K
        if "attn_v.weight" in name:
            self.i_v += 1
            return self._attn_v(self.i_v - 1)
        if "ffn_down" in name:
            self.i_down += 1
            return self._ffn_down(self.i_down - 1)
        if "attn_output.weight" in name:
            return {"q2_k": Q.Q3_K, "q3_k_m": Q.Q4_K, "q3_k_l": Q.Q5_K}.get(out_type, base)
        if "attn_qkv.weight" in name:
            return {"q3_k_m": Q.Q4_K, "q3_k_l": Q.Q4_K, "q4_k_m": Q.Q5_K, "q5_k_m": Q.Q6_K}.get(out_type, base)
        return base

    def _attn_v(self, i: int) -> Q:
        out_type = self.out_type
        if out_type == "q2_k":
            return Q.Q4_K if self.n_gqa >= 4 else Q.Q3_K
        if out_type == "q3_k_m":
            return Q.Q5_K if i < 2 else Q.Q4_K
        if out_type == "q3_k_l":
            return Q.Q5_K
        if out_type in ("q4_k_m", "q5_k_m") and _use_more_bits(i, self.n_v):
            return Q.Q6_K
        if out_type == "q4_k_s" and i < 4:
            return Q.Q5_K
        return self.base

    def _ffn_down(self, i: int) -> Q:
        out_type, n = self.out_type, self.n_down
        if out_type == "q2_k":
            return Q.Q3_K
        if out_type == "q3_k_m":
            return Q.Q5_K if i < n // 16 else Q.Q4_K
        if out_type == "q3_k_l":
            return Q.Q5_K
        if out_type in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n):
            return Q.Q6_K
        if out_type == "q4_k_s" and i < n // 8:
            return Q.Q5_K
        return self.base


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


def input_is_quantized(path: Path) -> bool:
    """Whether a GGUF's weights are already quantized (re-quantizing those compounds the error)."""
    from tuillm.convert.gguf_header import read_gguf_header

    try:  # the header only: gguf.GGUFReader would parse the whole vocabulary (seconds)
        file_type = read_gguf_header(path).fields.get("general.file_type")
    except (OSError, ValueError):
        return False
    unquantized = {int(gguf.LlamaFileType[OUTPUT_TYPES[t].ftype]) for t in UNQUANTIZED_TYPE_NAMES}
    return isinstance(file_type, int) and file_type not in unquantized


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
    check_output(out_path, [in_path], force=True)  # replacing an existing output is the caller's decision
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
            str(threads), str(os.getpid())]
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


def _end_with_parent(parent: int) -> None:
    """The child ends when its parent does, so a parent killed outright (SIGKILL) leaves no quantizer running:
    on Linux the kernel sends SIGKILL (PR_SET_PDEATHSIG); everywhere a thread watches for a new parent pid (the
    quantizer runs in C with the GIL released, so the thread gets its turn)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _quantize_in_this_process(in_path: str, out_path: str, out_type: str, threads: str, parent: str = "0") -> int:
    """The child's side of ``_run_quantizer``."""
    import ctypes

    if int(parent):
        _end_with_parent(int(parent))
    import llama_cpp  # loads the native library: only in the child

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{OUTPUT_TYPES[out_type].ftype}")
    params.nthread = int(threads)
    params.allow_requantize = True
    return int(llama_cpp.llama_model_quantize(os.fsencode(in_path), os.fsencode(out_path), ctypes.byref(params)))


def intermediate_type(folder: Path) -> str:
    """bf16 when the checkpoint is bf16 (lossless, and no f16 overflow), else f16."""
    from tuillm.convert.checkpoint import open_checkpoint

    tensors = open_checkpoint(folder).tensors.values()
    return "bf16" if any(t.dtype == "BF16" for t in tensors if len(t.shape) >= 2) else "f16"


if __name__ == "__main__":  # the quantizer's child process (see _run_quantizer)
    sys.exit(_quantize_in_this_process(*sys.argv[1:6]))
