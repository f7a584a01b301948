"""A GGUF header (metadata and tensor table) packed in bulk: the same bytes gguf-py's GGUFWriter writes.

GGUFWriter packs every array element with its own ``struct.pack`` call: ~0.6 s for a 49k-token vocabulary and its
merges. Here a numeric array is one numpy ``tobytes()`` and a string array one vectorised interleave of lengths
and joined bytes. The metadata is still collected by a GGUFWriter (its ``add_*`` methods name the keys and types;
the writers of ``archs/``, ``hparams`` and ``vocab`` call them), opened on no file: only the packing is ours.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import gguf
import numpy as np

V = gguf.GGUFValueType
# Little-endian numpy dtypes of the fixed-size value types (the struct formats GGUFWriter uses, as arrays).
_NUMERIC = {
    V.UINT8: np.dtype("<u1"), V.INT8: np.dtype("<i1"), V.UINT16: np.dtype("<u2"), V.INT16: np.dtype("<i2"),
    V.UINT32: np.dtype("<u4"), V.INT32: np.dtype("<i4"), V.FLOAT32: np.dtype("<f4"), V.UINT64: np.dtype("<u8"),
    V.INT64: np.dtype("<i8"), V.FLOAT64: np.dtype("<f8"), V.BOOL: np.dtype("?"),
}
_FORMAT = {V.UINT8: "B", V.INT8: "b", V.UINT16: "H", V.INT16: "h", V.UINT32: "I", V.INT32: "i", V.FLOAT32: "f",
           V.UINT64: "Q", V.INT64: "q", V.FLOAT64: "d", V.BOOL: "?"}


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _utf8(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise ValueError(f"Invalid GGUF string value of type {type(value).__name__}")


def _string(value: str | bytes) -> bytes:
    data = _utf8(value)
    return _u64(len(data)) + data


def _element_type(values: Sequence[Any]) -> gguf.GGUFValueType:
    """GGUFWriter's choice for an array without a declared type: the first element's, the same for every element
    (decided once per Python type present, not once per element)."""
    first = V.get_type(values[0])
    by_class: dict[type, gguf.GGUFValueType] = {}
    for item in values:
        kind = by_class.get(item.__class__)
        if kind is None:
            kind = by_class[item.__class__] = V.get_type(item)
        if kind is not first:
            raise ValueError("All items in a GGUF array should be of the same type")
    return first


def _string_array(values: Sequence[Any]) -> bytes:
    """Each string as a u64 byte length then its UTF-8 bytes, built as one buffer."""
    try:
        encoded = [v.encode("utf-8") for v in values]  # all str: the common case, without a call per element
    except AttributeError:
        encoded = [_utf8(v) for v in values]
    lengths = np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded))
    # Record i starts at starts[i]: 8 bytes of length, then its data.
    starts = np.zeros(len(encoded), dtype=np.int64)
    np.cumsum(lengths[:-1] + 8, out=starts[1:])
    out = np.empty(int(starts[-1] + 8 + lengths[-1]), dtype=np.uint8)
    length_at = (starts[:, None] + np.arange(8)).ravel()
    out[length_at] = lengths.view(np.uint8)
    is_data = np.ones(out.size, dtype=bool)
    is_data[length_at] = False
    out[is_data] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return out.tobytes()


def _numeric_array(values: Sequence[Any], kind: gguf.GGUFValueType) -> bytes:
    dtype = _NUMERIC[kind]
    if kind in (V.FLOAT32, V.FLOAT64):
        source = np.array(values, dtype=np.float64)
        with np.errstate(over="ignore"):
            packed = source.astype(dtype)
        # struct refuses a finite value too large for the format; the cast would make it inf.
        if np.any(np.isinf(packed) & np.isfinite(source)):
            raise OverflowError(f"float too large to pack as {kind.name}")
        return packed.tobytes()
    if kind is V.BOOL:
        return np.array([bool(v) for v in values], dtype=dtype).tobytes()
    # Python ints (no float/str coercion: struct refuses those for an integer format).
    if not all(isinstance(v, int) for v in values):
        raise struct.error(f"required argument is not an integer (array of {kind.name})")
    return np.array(values, dtype=dtype).tobytes()  # OverflowError when a value does not fit


def pack_value(value: Any, kind: gguf.GGUFValueType, sub_type: gguf.GGUFValueType | None = None) -> bytes:
    """``value`` as GGUF bytes (without the leading type), as GGUFWriter packs it."""
    if kind in _FORMAT:
        return struct.pack("<" + _FORMAT[kind], value)
    if kind is V.STRING:
        return _string(value)
    if kind is not V.ARRAY:
        raise ValueError("Invalid GGUF metadata value type or value")
    if not isinstance(value, Sequence):
        raise ValueError("Invalid GGUF metadata array, expecting sequence")
    if len(value) == 0:
        raise ValueError("Invalid GGUF metadata array. Empty array")
    if sub_type is not None:
        element = sub_type
    elif isinstance(value, bytes):
        element = V.UINT8
    else:
        element = _element_type(value)
    head = _u32(element) + _u64(len(value))
    if isinstance(value, bytes) and element is V.UINT8:
        return head + value
    if element is V.STRING:
        return head + _string_array(value)
    if element in _NUMERIC:
        return head + _numeric_array(value, element)
    return head + b"".join(pack_value(item, element) for item in value)  # arrays of arrays: rare and small


def pack_metadata(kv: Mapping[str, gguf.GGUFValue]) -> bytes:
    """The key/value section: each key as a string, its type, its value."""
    return b"".join(_string(key) + _u32(val.type) + pack_value(val.value, val.type, val.sub_type)
                    for key, val in kv.items())


def header_bytes(writer: gguf.GGUFWriter) -> tuple[bytes, list[int]]:
    """The whole header of the single file ``writer`` describes (magic to the padding before the tensor data) and
    each tensor's data offset from the start of the file, in the order of its tensor table."""
    if writer.endianess != gguf.GGUFEndian.LITTLE or len(writer.tensors) != 1 or len(writer.kv_data) != 1:
        raise ValueError("only single-file little-endian GGUF headers are packed here")
    kv, tensors, align = writer.kv_data[0], writer.tensors[0], writer.data_alignment
    parts = [struct.pack("<I", gguf.GGUF_MAGIC), _u32(gguf.GGUF_VERSION), _u64(len(tensors)), _u64(len(kv)),
             pack_metadata(kv)]
    relative: list[int] = []
    offset = 0
    for name, info in tensors.items():
        dims = tuple(reversed([int(d) for d in info.shape]))  # ggml order: the row length first
        parts.append(_string(name) + _u32(len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + _u32(info.dtype) + _u64(offset))
        relative.append(offset)
        offset += -(-info.nbytes // align) * align
    head = b"".join(parts)
    head += b"\0" * (-len(head) % align)
    return head, [len(head) + r for r in relative]


def data_end(writer: gguf.GGUFWriter, header_size: int) -> int:
    """The file size: the header, then every tensor's data padded to the alignment (the last one included)."""
    align = writer.data_alignment
    return header_size + sum(-(-info.nbytes // align) * align for info in writer.tensors[0].values())
