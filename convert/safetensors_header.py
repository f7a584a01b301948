"""Safetensors headers without torch: tensor names, dtypes, shapes and byte ranges.

Layout of a .safetensors file: 8 bytes little-endian header length N, N bytes of JSON, then the raw data.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# Refuse absurd headers before allocating for them (a corrupt length field).
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file (the message says why)."""


@dataclass(frozen=True, slots=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    begin: int  # absolute byte offset in ``file``
    end: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        return self.end - self.begin


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Tensor entries and the ``__metadata__`` of one file; checks the data fits in the file."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise SafetensorsError("too short to be a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise SafetensorsError("header length is larger than the file (truncated or not safetensors)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SafetensorsError(f"header is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    entries: dict[str, TensorEntry] = {}
    for name, spec in header.items():
        try:
            dtype = spec["dtype"]
            shape = tuple(int(d) for d in spec["shape"])
            begin, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"malformed entry for tensor {name!r}") from None
        if data_start + end > size:
            raise SafetensorsError(f"tensor {name!r} runs past the end of the file (truncated)")
        entries[name] = TensorEntry(name, dtype, shape, path, data_start + begin, data_start + end)
    return entries, metadata


def checkpoint_files(folder: Path) -> list[Path]:
    """The safetensors files of an HF checkpoint folder: from the index when sharded, else ``*.safetensors``."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SafetensorsError(f"{index.name} is not a valid index") from None
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise SafetensorsError(f"shard {missing[0]} named by {index.name} is missing")
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


def read_checkpoint(folder: Path) -> dict[str, TensorEntry]:
    """All tensor entries of a (possibly sharded) checkpoint; checks the index names only tensors that exist."""
    folder = Path(folder)
    entries: dict[str, TensorEntry] = {}
    for file in checkpoint_files(folder):
        try:
            found, _ = read_header(file)
        except SafetensorsError as exc:
            raise SafetensorsError(f"{file.name}: {exc}") from None
        entries.update(found)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        for name, shard in weight_map.items():
            if name not in entries:
                raise SafetensorsError(f"index names tensor {name!r} but {shard} does not hold it")
    return entries
