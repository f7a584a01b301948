"""A fast GGUF header reader: metadata and tensor infos, no tensor data.

gguf's GGUFReader builds a numpy view for every array element, which takes seconds on a 50k-token vocabulary; a
catalog scan needs only the header, so this walks it with struct and skips the long arrays (the token list, merges),
keeping their length.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuillm.convert.errors import ConvertError
from tuillm.convert.gguf_checks import MetadataError, check_metadata, shown

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Arrays up to this length are kept (per-layer values); longer ones are skipped and only counted.
KEEP_ARRAY_MAX = 1024
# A single string longer than this is a corrupt length field, not data (the largest real ones are chat templates).
MAX_STRING = 64 * 1024 * 1024
# ggml's GGML_MAX_DIMS: gguf refuses tensors with more dimensions.
MAX_DIMS = 4

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFHeaderError(ConvertError, ValueError):
    """The file is not a readable GGUF, or holds metadata llama.cpp cannot take (the message says why, in a few
    words, naming the key)."""


class LlamaLimitError(GGUFHeaderError):
    """Readable metadata that llama.cpp cannot take (it would abort on it): a count out of its range, a wrong type."""


@dataclass(frozen=True, slots=True)
class SkippedArray:
    """A long array that was not read: its element type and length."""

    item_type: int
    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_name: str
    offset: int  # absolute byte offset in the file
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFHeader:
    version: int
    fields: dict[str, Any] = field(default_factory=dict)
    types: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # key -> (value type, array item type)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise GGUFHeaderError("truncated GGUF header")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def string(self, what: str) -> str:
        """A string, which must be UTF-8 (llama-cpp-python decodes metadata strictly); ``what`` names it in the
        error."""
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise GGUFHeaderError("corrupt string length in header")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFHeaderError(f"{what} is not valid UTF-8") from None

    def skip_string(self) -> None:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise GGUFHeaderError("corrupt string length in header")
        self.pos += n
        if self.pos > len(self.buf):
            raise GGUFHeaderError("truncated GGUF header")

    def scalar(self, vtype: int, key: str) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string(f"metadata {key}")
        raise GGUFHeaderError(f"metadata {key} has unknown value type {vtype}")

    def value(self, vtype: int, key: str) -> tuple[Any, int | None]:
        """A value and, for an array, its item type. Arrays hold scalars or strings only: llama.cpp refuses arrays
        of arrays, so they are refused here too, which also bounds the nesting (no recursion)."""
        if vtype != _ARRAY:
            return self.scalar(vtype, key), None
        item_type = self.unpack("<I")
        count = self.unpack("<Q")
        if item_type == _ARRAY:
            raise GGUFHeaderError(f"metadata {key} is an array of arrays (llama.cpp cannot read it)")
        if item_type not in _SCALARS and item_type != _STRING:
            raise GGUFHeaderError(f"metadata {key} has unknown value type {item_type}")
        if count > len(self.buf):
            raise GGUFHeaderError("corrupt array length in header")
        if count > KEEP_ARRAY_MAX:
            self._skip_array(item_type, count)
            return SkippedArray(item_type, count), item_type
        return [self.scalar(item_type, key) for _ in range(count)], item_type

    def _skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[item_type]) * count
            if self.pos > len(self.buf):
                raise GGUFHeaderError("truncated GGUF header")
        else:
            for _ in range(count):
                self.skip_string()


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse the header of ``path``; raises GGUFHeaderError (or OSError) with a short reason."""
    path = Path(path)
    # O_NONBLOCK: opening a FIFO named *.gguf must not wait for a writer; then only a regular file is read.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GGUFHeaderError("not a regular file")
    with os.fdopen(fd, "rb") as f:
        if f.read(4) != MAGIC:
            raise GGUFHeaderError("not a GGUF file (bad magic)")
        size = f.seek(0, 2)
        if size < 24:
            raise GGUFHeaderError("truncated GGUF header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf, size)


def _parse(buf: mmap.mmap, size: int) -> GGUFHeader:
    cur = _Cursor(buf)
    cur.take(4)  # the magic, checked by read_gguf_header
    version = cur.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        if struct.unpack(">I", struct.pack("<I", version))[0] in SUPPORTED_VERSIONS:
            raise GGUFHeaderError("big-endian GGUF files are not supported")
        raise GGUFHeaderError(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors = cur.unpack("<Q")
    n_kv = cur.unpack("<Q")
    if n_tensors > size or n_kv > size:
        raise GGUFHeaderError("truncated or corrupt GGUF header")
    header = GGUFHeader(version=version)
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i + 1}")
        if key in header.fields:
            raise GGUFHeaderError(f"metadata key {shown(key)} appears twice")
        vtype = cur.unpack("<I")
        header.fields[key], item_type = cur.value(vtype, shown(key))
        header.types[key] = (vtype, item_type)
    try:
        check_metadata(header.fields, header.types)
    except MetadataError as exc:
        raise LlamaLimitError(str(exc)) from None
    # No reader of ours has a use for a GGUF without tensors (a model, a LoRA adapter and an imatrix all have some);
    # refused here, after the metadata checks, so info, quantize, the Models pane and chat say the same.
    if n_tensors == 0:
        raise GGUFHeaderError("holds no tensors (not a model)")
    raw_tensors = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor #{i + 1}")
        n_dims = cur.unpack("<I")
        if n_dims > MAX_DIMS:
            raise GGUFHeaderError(f"tensor {shown(name)} has {n_dims} dimensions (GGUF allows at most {MAX_DIMS})")
        if name in names:
            raise GGUFHeaderError(f"tensor {shown(name)} appears twice")
        names.add(name)
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        raw_tensors.append((name, shape, cur.unpack("<I"), cur.unpack("<Q")))
    # gguf's package imports numpy and yaml: read here, not when the app (or `tuillm --help`) starts.
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    alignment = header.fields.get("general.alignment", DEFAULT_ALIGNMENT)
    header.data_offset = -(-cur.pos // alignment) * alignment
    for name, shape, type_id, offset in raw_tensors:
        try:
            qtype = GGMLQuantizationType(type_id)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise GGUFHeaderError(f"tensor {shown(name)} has unknown type {type_id}") from None
        n = 1
        for d in shape:
            n *= d
        n_bytes = n // block * type_size
        start = header.data_offset + offset
        if start + n_bytes > size:
            raise GGUFHeaderError(f"truncated file (tensor {shown(name)} runs past the end)")
        header.tensors.append(TensorInfo(name, shape, qtype.name, start, n_bytes))
    return header
