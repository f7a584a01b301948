"""HF checkpoint folder -> GGUF (f32, f16, bf16, q8_0), streamed piece by piece.

The header (metadata + every tensor's name, shape, type and offset) is computed from the safetensors headers alone
and packed in bulk (``gguf_write``); then tensor data is read in row ranges, transformed, encoded and written at
its offset by a small thread pool (``gguf_write_data``), so peak memory is a few pieces whatever the model size.
The file is written under a temporary name in the output folder and renamed when complete; on any failure or
interruption the pool is stopped and the temporary file removed.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from tuillm.convert.archs import find_arch
from tuillm.convert.archs.base import Arch
from tuillm.convert.checkpoint import Checkpoint, bf16_to_f16, bf16_to_f32, open_checkpoint
from tuillm.convert.child import usable_cpus
from tuillm.convert.errors import ConvertError
from tuillm.convert.gguf_write import data_end, header_bytes
from tuillm.convert.gguf_write_data import Piece, write_gguf
from tuillm.convert.hparams import HParams, read_hparams
from tuillm.convert.output import atomic_output
from tuillm.convert.progress import ConvertProgress, ProgressFn
from tuillm.convert.tensors import (
    Q,
    TensorShape,
    direct_tensor_type,
    file_type,
    ggml_type,
    nbytes,
    permute_rope,
)
from tuillm.convert.types import CONVERT_DEFAULT, DIRECT_TYPE_NAMES, output_type
from tuillm.convert.vocab import add_vocab, read_vocab

EMBED_NAMES = ("model.embed_tokens.weight", "embed_tokens.weight")
# Tensors HF keeps that llama.cpp does not use.
_SKIP = re.compile(r"(rotary_emb\.inv_freq|\.attention\.masked_bias|\.attention\.bias)$")
_BLOCK = re.compile(r"\.layers\.(\d+)\.")
_GGUF_BLOCK = re.compile(r"blk\.(\d+)\.")
# What llama.cpp requires of every layer in each architecture here, whatever layer 0 holds.
_LAYER_REQUIRED = ("attn_norm.weight", "attn_output.weight", "ffn_down.weight")
# Work is cut into units of at most this many values (32 MB as float32): peak memory is a few units, whatever
# the size of the model or of its largest tensor.
UNIT_ELEMENTS = 8 * 1024 * 1024


@dataclass
class _Planned:
    gguf_name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    nbytes: int
    # Encoders of consecutive row ranges, with their sizes: their outputs, concatenated, are the tensor's bytes.
    units: list[tuple[int, Callable[[], np.ndarray]]]


def _to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, rounding to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)


def _encode(values: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == Q.F32:
        return np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F16:
        return np.ascontiguousarray(values, dtype=np.float16)
    if qtype == Q.BF16:
        return _to_bf16(values)
    return gguf.quants.quantize(np.ascontiguousarray(values, dtype=np.float32), qtype)


def _sort_key(name: str) -> tuple[int, str]:
    m = _BLOCK.search(name)
    return (int(m.group(1)) if m else (-1 if "embed" in name else 1 << 30), name)


def _plan(ck: Checkpoint, arch: Arch, hp: HParams, out: gguf.GGMLQuantizationType) -> list[_Planned]:
    names = gguf.get_tensor_name_map(arch.gguf_arch, hp.n_layer)
    plan: list[_Planned] = []
    for hf_name in sorted(ck.tensors, key=_sort_key):
        if _SKIP.search(hf_name):
            continue
        if hf_name == "lm_head.weight" and hp.tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConvertError(f"tensor {hf_name} has no GGUF name for {arch.name} (unexpected checkpoint layout)")
        entry = ck.tensors[hf_name]
        shape = entry.shape
        qtype = direct_tensor_type(gguf_name, shape, out)
        permute_heads = None
        if arch.permute_qk and re.search(r"\.(q_proj)\.(weight|bias)$", hf_name):
            permute_heads = hp.n_head
        elif arch.permute_qk and re.search(r"\.(k_proj)\.(weight|bias)$", hf_name):
            permute_heads = hp.n_head_kv
        offset = arch.norm_offset if hf_name.endswith("norm.weight") else 0.0
        # The q/k permutation moves rows only within a head, so their pieces are whole heads.
        ranges = [None] if len(shape) < 2 else _row_ranges(shape, shape[0] // permute_heads if permute_heads else 1)
        units = [(nbytes(shape if rows is None else (rows[1] - rows[0], *shape[1:]), qtype),
                  _loader(ck, hf_name, qtype, permute_heads, offset, rows)) for rows in ranges]
        plan.append(_Planned(gguf_name, shape, qtype, nbytes(shape, qtype), units))
    for gguf_name, values in arch.extra_tensors(ck.config, hp):
        plan.append(_Planned(gguf_name, values.shape, Q.F32, values.nbytes, [(values.nbytes, lambda v=values: v)]))
    _check_complete(ck, [p.gguf_name for p in plan], hp.n_layer)
    return plan


def _check_complete(ck: Checkpoint, names: list[str], n_layer: int) -> None:
    """Refuse a plan that lacks a tensor llama.cpp requires: it would write a file llama.cpp cannot load.

    Every layer 0..n_layer-1 must have what layer 0 has (the layers of the architectures here are alike), and at
    least a norm, an attention output and an FFN down projection; the embedding is checked by its reader.
    """
    present = set(names)
    suffixes = [n.removeprefix("blk.0.") for n in names if n.startswith("blk.0.")]
    suffixes += [s for s in _LAYER_REQUIRED if s not in suffixes]
    layers = {int(m.group(1)) for n in names if (m := _GGUF_BLOCK.match(n))}
    held = f"the weights have {max(layers) + 1} layers" if layers else "the weights have no layers"
    for i in range(n_layer):
        missing = next((f"blk.{i}.{s}" for s in suffixes if f"blk.{i}.{s}" not in present), None)
        if missing is not None:
            raise ConvertError(f"{ck.folder}: tensor {missing} is missing (config.json's num_hidden_layers is "
                               f"{n_layer}; {held})")
    if "output_norm.weight" not in present:
        raise ConvertError(f"{ck.folder}: tensor output_norm.weight is missing (the final norm, model.norm.weight)")


def _row_ranges(shape: tuple[int, ...], multiple: int = 1) -> list[tuple[int, int] | None]:
    """Split a tensor into row ranges of about UNIT_ELEMENTS values, each a multiple of ``multiple`` rows
    (every encoding here is row-wise)."""
    row = int(np.prod(shape[1:], dtype=np.int64)) or 1
    step = max(multiple, UNIT_ELEMENTS // row // multiple * multiple)
    if step >= shape[0]:
        return [None]
    return [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]


class _Scratch(threading.local):
    """Each pool thread's two buffers (what it read, what it encoded), reused piece after piece: a new array of a
    piece's size would cost the kernel thousands of freshly zeroed pages every time. A piece's array is written out
    before its thread takes the next piece, so reuse never overwrites data still to be written."""

    def __init__(self) -> None:
        self.memory = [np.empty(0, np.uint8), np.empty(0, np.uint8)]

    def buffer(self, slot: int) -> Callable[[int], np.ndarray]:
        def get(nbytes: int) -> np.ndarray:
            if self.memory[slot].size < nbytes:
                self.memory[slot] = np.empty(0, np.uint8)  # the old one freed before the new one is taken
                self.memory[slot] = np.empty(nbytes, np.uint8)
            return self.memory[slot]

        return get


_SCRATCH = _Scratch()


def _loader(ck: Checkpoint, hf_name: str, qtype: Q, permute_heads: int | None, offset: float,
            rows: tuple[int, int] | None) -> Callable[[], np.ndarray]:
    source = ck.tensors[hf_name].dtype

    def load() -> np.ndarray:
        raw = ck.read_raw(hf_name, rows, _SCRATCH.buffer(0))
        if permute_heads:
            heads = permute_heads if rows is None else permute_heads * raw.shape[0] // ck.tensors[hf_name].shape[0]
            raw = permute_rope(raw, heads)  # a row reordering: fine on raw bf16 bits too
        # Same type in and out with no value change: pass the stored bits through untouched.
        if offset == 0.0 and ((source == "BF16" and qtype == Q.BF16) or (source == "F16" and qtype == Q.F16)
                              or (source == "F32" and qtype == Q.F32)):
            return np.ascontiguousarray(raw)
        if source == "BF16" and qtype == Q.F16 and offset == 0.0:
            return bf16_to_f16(raw, _SCRATCH.buffer(1))  # the common case (bf16 checkpoint to f16) in one pass
        values = bf16_to_f32(raw) if source == "BF16" else raw.astype(np.float32, copy=False)
        if offset:
            values = values + np.float32(offset)
        return _encode(values, qtype)

    return load


def _embedding_rows(ck: Checkpoint) -> int:
    for name in EMBED_NAMES:
        if name in ck.tensors:
            return ck.tensors[name].shape[0]
    raise ConvertError(f"{ck.folder}: no token embedding tensor (model.embed_tokens.weight)")


def _return_freed_memory_to_os() -> None:
    """Make glibc serve large buffers with mmap, so freed tensor buffers leave the process at once.

    Why: glibc raises its mmap threshold (up to 32 MB) after large frees; later buffers then come from
    per-thread heaps that keep freed memory, and RSS creeps up with the model size. A fixed threshold stops it.
    """
    import ctypes
    import ctypes.util

    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_MALLOC_TUNED = False


def hf_tensors(folder: Path) -> tuple[list[TensorShape], int]:
    """The tensors ``convert_hf`` writes for an HF checkpoint (from its headers only) and the GQA factor."""
    ck = open_checkpoint(Path(folder))
    arch = find_arch(ck.config)
    hp = read_hparams(ck.config, _embedding_rows(ck))
    plan = _plan(ck, arch, hp, Q.F32)
    tensors = [TensorShape(p.gguf_name, tuple(reversed(p.shape))) for p in plan]
    return tensors, (hp.n_head // hp.n_head_kv if hp.n_head_kv else 1)


def convert_hf(folder: Path, out_path: Path, out_type: str = CONVERT_DEFAULT, *, progress: ProgressFn | None = None,
               threads: int | None = None, name: str | None = None) -> Path:
    """Convert an HF checkpoint folder to one GGUF file of ``out_type`` (f32, f16, bf16 or q8_0)."""
    kind = output_type(out_type)
    if kind is None or not kind.direct:
        raise ConvertError(f"output type {out_type!r} is not written directly; use one of "
                           f"{', '.join(DIRECT_TYPE_NAMES)}")
    out_type = kind.name
    folder, out_path = Path(folder), Path(out_path)
    ck = open_checkpoint(folder)
    arch = find_arch(ck.config)
    n_vocab = _embedding_rows(ck)
    hp = read_hparams(ck.config, n_vocab)
    vocab = read_vocab(folder, n_vocab)  # fail on a bad tokenizer before anything is written
    plan = _plan(ck, arch, hp, ggml_type(out_type))
    _return_freed_memory_to_os()
    writer = gguf.GGUFWriter(None, arch.gguf_name)  # collects the metadata (no file); gguf_write packs it
    writer.add_name(name or folder.resolve().name)
    writer.add_file_type(int(file_type(out_type)))
    if out_type == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    arch.write_metadata(writer, ck.config, hp)
    add_vocab(writer, folder, vocab, arch.add_space_prefix)
    for p in plan:
        writer.add_tensor_info(p.gguf_name, p.shape, np.dtype(np.float32), p.nbytes, raw_dtype=p.qtype)
    header, offsets = header_bytes(writer)
    tally = _Tally(plan, progress)
    with atomic_output(out_path) as tmp:
        tally.report()
        write_gguf(tmp, header, data_end(writer, len(header)), _pieces(plan, offsets),
                   threads or min(4, usable_cpus()), tally.piece_done, lambda i: plan[i].gguf_name)
        if tally.done != len(plan):
            raise ConvertError("internal error: tensor data does not match the tensor table")
    return out_path


class _Tally:
    """Progress by tensors: pieces finish out of order, and a tensor is done when the last of its pieces is."""

    def __init__(self, plan: list[_Planned], progress: ProgressFn | None) -> None:
        self.left = [len(p.units) for p in plan]
        self.total_bytes = sum(p.nbytes for p in plan)
        self.progress = progress
        self.done = self.written = 0
        self.start = time.monotonic()

    def report(self) -> None:
        if self.progress is not None:
            self.progress(ConvertProgress("convert", self.done, len(self.left), self.written, self.total_bytes,
                                          time.monotonic() - self.start))

    def piece_done(self, piece: Piece) -> None:
        self.written += piece.nbytes
        self.left[piece.tensor] -= 1
        if self.left[piece.tensor] == 0:
            self.done += 1
            self.report()


def _pieces(plan: list[_Planned], offsets: list[int]) -> Iterator[Piece]:
    """Every unit of every tensor as a Piece at its place in the file, in file order."""
    for i, (p, offset) in enumerate(zip(plan, offsets, strict=True)):
        for size, encode in p.units:
            yield Piece(i, offset, size, encode)
            offset += size
