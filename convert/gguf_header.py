"""A fast GGUF header reader: metadata and tensor infos, no tensor data.

gguf's GGUFReader builds a numpy view for every array element, which takes seconds on a 50k-token vocabulary; a
catalog scan needs only the header, so this walks it with struct and skips the long arrays (the token list, merges),
keeping their length.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Arrays up to this length are kept (per-layer values); longer ones are skipped and only counted.
KEEP_ARRAY_MAX = 1024
# A single string longer than this is a corrupt length field, not data (the largest real ones are chat templates).
MAX_STRING = 64 * 1024 * 1024

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFHeaderError(ValueError):
    """The file is not a readable GGUF (the message says why, in a few words)."""


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

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise GGUFHeaderError("corrupt string length in header")
        return self.take(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise GGUFHeaderError("corrupt string length in header")
        self.pos += n
        if self.pos > len(self.buf):
            raise GGUFHeaderError("truncated GGUF header")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if count > len(self.buf):
                raise GGUFHeaderError("corrupt array length in header")
            if count > KEEP_ARRAY_MAX:
                self._skip_array(item_type, count)
                return SkippedArray(item_type, count)
            return [self.value(item_type) for _ in range(count)]
        raise GGUFHeaderError(f"unknown metadata value type {vtype}")

    def _skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[item_type]) * count
            if self.pos > len(self.buf):
                raise GGUFHeaderError("truncated GGUF header")
        elif item_type == _STRING:
            for _ in range(count):
                self.skip_string()
        else:  # arrays of arrays are not used by any model format we read; walk them anyway
            for _ in range(count):
                self.value(item_type)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse the header of ``path``; raises GGUFHeaderError (or OSError) with a short reason."""
    path = Path(path)
    with path.open("rb") as f:
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
    for _ in range(n_kv):
        key = cur.string()
        header.fields[key] = cur.value(cur.unpack("<I"))
    raw_tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        if n_dims > 8:
            raise GGUFHeaderError(f"corrupt tensor info for {name}")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        raw_tensors.append((name, shape, cur.unpack("<I"), cur.unpack("<Q")))
    alignment = header.fields.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = DEFAULT_ALIGNMENT
    header.data_offset = -(-cur.pos // alignment) * alignment
    for name, shape, type_id, offset in raw_tensors:
        try:
            qtype = GGMLQuantizationType(type_id)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise GGUFHeaderError(f"tensor {name} has unknown type {type_id}") from None
        n = 1
        for d in shape:
            n *= d
        n_bytes = n // block * type_size
        start = header.data_offset + offset
        if start + n_bytes > size:
            raise GGUFHeaderError(f"truncated file (tensor {name} runs past the end)")
        header.tensors.append(TensorInfo(name, shape, qtype.name, start, n_bytes))
    return header
