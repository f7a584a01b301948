"""Quantized GGUF outputs: K-quants, IQ types and the legacy block types, all through llama.cpp.

The types llama.cpp writes are made from an f16/bf16 GGUF (``intermediate_type`` says which);
``convert_many`` in tuillm.core.conversion.job is the one orchestrator that writes it and quantizes from it.

``quantize_gguf`` is the one quantize function. A plain quantization (no importance matrix, no tensor-type
overrides) runs llama.cpp's quantizer from the installed library in a child process: it needs no built tools, and
the library is the same llama.cpp version as the tools, so the file is the same. With an importance matrix or
overrides it runs llama-quantize (``tuillm.convert.llama_tools``): the library's imatrix parameter wants the
matrix already parsed into C arrays, which is llama-quantize's own job, and one implementation of that is enough.
Either way the child is polled and killed as ``tuillm.convert.child`` describes: progress comes from the output's
growth against ``output_tensor_types``'s predicted tensor sizes (``tuillm.convert.quant_rules``).
"""

from __future__ import annotations

import os
import re
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from pathlib import Path

import gguf

from tuillm.convert.child import end_with_parent, run_child, run_tool, usable_cpus
from tuillm.convert.errors import ConvertError
from tuillm.convert.output import atomic_output, check_output
from tuillm.convert.progress import ConvertProgress, ProgressFn
from tuillm.convert.quant_rules import output_tensor_types, requires_imatrix
from tuillm.convert.tensors import Q, TensorShape, tensor_bytes
from tuillm.convert.types import OUTPUT_TYPES, UNQUANTIZED_TYPE_NAMES, check_type

__all__ = ["gguf_tensors", "input_is_quantized", "intermediate_type", "no_space_message", "output_tensor_types",
           "quantize_gguf"]

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
                  progress: ProgressFn | None = None, imatrix: Path | None = None,
                  tensor_types: Mapping[str, str] | None = None, temporary_input: bool = False) -> Path:
    """Re-quantize a GGUF file with llama.cpp, writing through a temporary name.

    ``imatrix``: an importance matrix file (``tuillm.convert.imatrix``); ``tensor_types``: ``--tensor-type``
    overrides (pattern -> ggml type, checked by ``tuillm.convert.imatrix.check_tensor_types``). A type that
    llama.cpp only writes with an importance matrix is refused without one. An already quantized input is
    accepted (llama.cpp dequantizes it first); expect some quality loss. ``progress`` is called about 5 times a
    second with the tensors written so far; an exception it raises (a cancel) stops the quantizer at once.
    ``temporary_input``: the input is the caller's temporary, removed after a failure (a full disk counts it).
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
    types = output_tensor_types(tensors, out_type, n_gqa=n_gqa, imatrix=imatrix is not None,
                                tensor_types=tensor_types)
    if imatrix is None and requires_imatrix(tensors, types):
        raise ConvertError(f"{out_type} needs an importance matrix (--imatrix auto computes one)")
    tool = None
    if imatrix is not None or tensor_types:
        from tuillm.convert.llama_tools import find_tool

        tool = find_tool("llama-quantize")  # before anything is written: a missing tool is one line, at once
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
    n_threads = str(threads or usable_cpus())
    with atomic_output(out_path, "quant") as tmp:
        def poll() -> None:
            report(_size(tmp) - header)

        if tool is None:
            rc, detail = run_child([sys.executable, "-m", "tuillm.convert.quantize", os.fspath(in_path),
                                    os.fspath(tmp), out_type, n_threads, str(os.getpid())], poll)
        else:
            rc, detail = run_tool(os.fspath(tool), _tool_args(in_path, tmp, out_type, n_threads, imatrix,
                                                              tensor_types), poll)
        if rc != 0:
            raise _failure(in_path, out_path, out_type, (rc, detail), header + total, _size(tmp), temporary_input)
    report(total)
    return out_path


def _failure(in_path: Path, out_path: Path, out_type: str, result: tuple[int, str], needed: int, held: int,
             temporary_input: bool) -> ConvertError:
    """The error for a failed quantizer: llama.cpp reports a full disk as a bare stream error, so the space
    left tells it apart. A temporary input on the same disk is needed too, and freed with the partial output."""
    rc, detail = result
    extra = _size(in_path) if temporary_input and _same_device(in_path, out_path.parent) else 0
    full = no_space_message(out_path.parent, needed + extra, held + extra, detail)
    return ConvertError(full or f"{in_path}: llama.cpp could not quantize it to {out_type} (error {rc}{detail})")


def no_space_message(folder: Path, needed: int, held: int = 0, detail: str = "", *,
                     statvfs: Callable[[Path], os.statvfs_result] = os.statvfs) -> str | None:
    """The line for a write that failed for want of space in ``folder``, or None when space is not the reason.

    ``needed``: the expected output size; ``held``: what the failed partial output holds (given back when it is
    removed, so it counts as free); ``detail``: the failure's own text, in case it names a full disk.
    """
    try:
        st = statvfs(folder)
        free = st.f_bavail * st.f_frsize + held
    except OSError:
        free = None
    if free is not None and free < needed:
        return f"{folder}: no space left on device (needs about {_human(needed)}, {_human(free)} free)"
    if "no space left" in detail.lower():
        return f"{folder}: no space left on device"
    return None


def _same_device(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False


def _human(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _tool_args(in_path: Path, tmp: Path, out_type: str, threads: str, imatrix: Path | None,
               tensor_types: Mapping[str, str] | None) -> list[str]:
    """llama-quantize's command line: [options] IN OUT TYPE THREADS."""
    args = ["--allow-requantize"] + (["--imatrix", os.fspath(imatrix)] if imatrix is not None else [])
    for pattern, qtype in (tensor_types or {}).items():
        args += ["--tensor-type", f"{pattern}={qtype}"]
    return [*args, os.fspath(in_path), os.fspath(tmp), out_type.upper(), threads]


def _write_order(name: str) -> tuple[int, str]:
    m = re.match(r"blk\.(\d+)\.", name)
    return (int(m.group(1)) if m else -1, name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _quantize_in_this_process(in_path: str, out_path: str, out_type: str, threads: str, parent: str = "0") -> int:
    """The in-library quantizer's child process (see ``quantize_gguf``)."""
    import ctypes

    if int(parent):
        end_with_parent(int(parent))
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


if __name__ == "__main__":  # the in-library quantizer's child process (see quantize_gguf)
    sys.exit(_quantize_in_this_process(*sys.argv[1:6]))
