"""GGUF files as bytes, for hostile-input tests: key/value records written by hand, and a copy of a real GGUF with
some records replaced (the tensor data copied as is), so a test can feed readers and llama.cpp exactly the bad
value it means to.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

# GGUF value types (gguf.GGUFValueType), spelled out so the bytes here do not depend on the code under test.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q",
            I64: "<q", F64: "<d"}


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def value_bytes(vtype: int, value: object) -> bytes:
    """The payload of one value of ``vtype`` (arrays: ``value`` is (item_type, [items]))."""
    if vtype == STRING:
        return gguf_string(value)  # type: ignore[arg-type]
    if vtype == ARRAY:
        item_type, items = value  # type: ignore[misc]
        return struct.pack("<IQ", item_type, len(items)) + b"".join(value_bytes(item_type, v) for v in items)
    return struct.pack(_FORMATS[vtype], value)


def kv(key: str | bytes, vtype: int, value: object) -> bytes:
    """One metadata record: key, type, value."""
    return gguf_string(key) + struct.pack("<I", vtype) + value_bytes(vtype, value)


def nested_array(depth: int) -> bytes:
    """The value bytes of an array holding an array ... ``depth`` deep, the innermost empty (type ARRAY)."""
    inner = struct.pack("<IQ", U8, 0)
    for _ in range(depth - 1):
        inner = struct.pack("<IQ", ARRAY, 1) + inner
    return inner


def header(records: list[bytes], n_tensors: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(records)) + b"".join(records)


def _skip_value(buf: bytes, pos: int, vtype: int) -> int:
    if vtype in _FORMATS:
        return pos + struct.calcsize(_FORMATS[vtype])
    if vtype == STRING:
        return pos + 8 + struct.unpack_from("<Q", buf, pos)[0]
    item_type, count = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    if item_type in _FORMATS:
        return pos + count * struct.calcsize(_FORMATS[item_type])
    for _ in range(count):
        pos = _skip_value(buf, pos, item_type)
    return pos


def replace_records(src: Path, dst: Path, changes: Mapping[str, bytes | None]) -> Path:
    """Copy the GGUF ``src`` to ``dst`` with the records of the keys in ``changes`` replaced by the given record
    bytes (``kv(...)``; None drops the key; keys not in the file are appended). Tensor infos and data are copied;
    the data section is realigned (tensor offsets are relative to it)."""
    buf = src.read_bytes()
    _, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos, records, pending = 24, [], dict(changes)
    for _ in range(n_kv):
        start = pos
        n = struct.unpack_from("<Q", buf, pos)[0]
        key = buf[pos + 8:pos + 8 + n].decode()
        pos = _skip_value(buf, pos + 12 + n, struct.unpack_from("<I", buf, pos + 8 + n)[0])
        if key in pending:
            new = pending.pop(key)
            if new is not None:
                records.append(new)
        else:
            records.append(buf[start:pos])
    records += [r for r in pending.values() if r is not None]
    infos_start = pos
    for _ in range(n_tensors):
        n = struct.unpack_from("<Q", buf, pos)[0]
        n_dims = struct.unpack_from("<I", buf, pos + 8 + n)[0]
        pos += 8 + n + 4 + 8 * n_dims + 4 + 8
    alignment = 32
    old_data = -(-pos // alignment) * alignment
    head = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(records)) + b"".join(records) + buf[infos_start:pos]
    head += b"\0" * (-len(head) % alignment)
    dst.write_bytes(head + buf[old_data:])
    return dst
