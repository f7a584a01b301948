"""Safetensors headers without torch: tensor names, dtypes, shapes and byte ranges.

Layout of a .safetensors file: 8 bytes little-endian header length N, N bytes of JSON, then the raw data.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuillm.convert.errors import ConvertError

# Refuse absurd headers before allocating for them (a corrupt length field).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# The checkpoint's other files (config, tokenizer, index, chat template) are read whole: the largest tokenizer.json
# on the hub is tens of MB, and a file past this (a mistake, or a sparse one) is refused before it is read.
MAX_SMALL_FILE_BYTES = 512 * 1024 * 1024

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}


class SafetensorsError(ConvertError, ValueError):
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


def load_json(data: bytes | str, what: str = "") -> Any:
    """JSON from a file of a checkpoint; a one-line SafetensorsError, "<what> is not valid JSON (why)", when it is
    not JSON, nesting deep enough to exhaust the parser's recursion included."""
    subject = f"{what} is " if what else ""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{subject}not valid JSON ({exc.__class__.__name__})") from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise SafetensorsError(f"{subject}not valid JSON (a number too long to read)") from None
    except RecursionError:
        raise SafetensorsError(f"{subject}not valid JSON (nested too deeply)") from None


def small_file_problem(path: Path) -> str | None:
    """Why ``path``, a file read whole, is refused: not a regular file (a FIFO would block the read for good), or
    larger than ``MAX_SMALL_FILE_BYTES``; None when it is fine (an OSError of its stat passes on)."""
    info = Path(path).stat()
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a pipe, socket or device)"
    if info.st_size <= MAX_SMALL_FILE_BYTES:
        return None
    return f"{info.st_size} bytes, larger than such a file ever is ({MAX_SMALL_FILE_BYTES // 2**20} MiB at most)"


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(name: str, spec: object, path: Path, data_start: int, size: int) -> TensorEntry:
    """One tensor's header entry, checked: a known dtype, a shape of counts, offsets in order, inside the data, and
    a byte range exactly as long as dtype x shape."""
    shown = repr(name)
    if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str) \
            or not isinstance(spec.get("shape"), list) or not isinstance(spec.get("data_offsets"), list):
        raise SafetensorsError(f"malformed entry for tensor {shown}")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise SafetensorsError(f"tensor {shown} has unknown dtype {dtype!r}")
    if not all(_is_count(d) for d in shape) or len(offsets) != 2 or not all(_is_count(x) for x in offsets):
        raise SafetensorsError(f"malformed entry for tensor {shown}")
    begin, end = offsets
    if begin > end:
        raise SafetensorsError(f"tensor {shown} has its offsets out of order ({begin} > {end})")
    if data_start + end > size:
        raise SafetensorsError(f"tensor {shown} runs past the end of the file (truncated)")
    entry = TensorEntry(name, dtype, tuple(shape), path, data_start + begin, data_start + end)
    if entry.n_elements * DTYPE_BYTES[dtype] != entry.n_bytes:
        raise SafetensorsError(f"tensor {shown} is {dtype} {list(shape)} ({entry.n_elements * DTYPE_BYTES[dtype]} "
                               f"bytes) but its data range holds {entry.n_bytes} bytes")
    return entry


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Tensor entries and the ``__metadata__`` of one file; every entry checked (``_entry``), no two overlapping."""
    path = Path(path)
    # O_NONBLOCK: a FIFO named *.safetensors must not block the open; only a regular file is read.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SafetensorsError("not a regular file")
        size = st.st_size
        raw = f.read(8)
        if len(raw) < 8:
            raise SafetensorsError("too short to be a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise SafetensorsError("header length is larger than the file (truncated or not safetensors)")
        header = load_json(f.read(n), "header")
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError("header __metadata__ is not an object of strings")
    entries = {name: _entry(name, spec, path, 8 + n, size) for name, spec in header.items()}
    previous: TensorEntry | None = None
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if previous is not None and entry.begin < previous.end and entry.n_bytes and previous.n_bytes:
            raise SafetensorsError(f"tensors {previous.name!r} and {entry.name!r} overlap")
        previous = entry if entry.n_bytes else previous
    return entries, metadata


def _weight_map(index: Path) -> dict[str, str]:
    """The index's tensor -> shard map; shards must be plain file names of the folder (no path out of it)."""
    try:
        if problem := small_file_problem(index):
            raise SafetensorsError(f"{index.name}: {problem}")
        text = index.read_bytes()
    except OSError as exc:
        raise SafetensorsError(f"{index.name} cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    data = load_json(text, index.name)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise SafetensorsError(f"{index.name} is not a valid index (no weight_map of tensor names to files)")
    for shard in weight_map.values():
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise SafetensorsError(f"{index.name} names a shard outside the folder: {shard!r}")
    return weight_map


def checkpoint_files(folder: Path) -> list[Path]:
    """The safetensors files of an HF checkpoint folder: from the index when sharded, else ``*.safetensors``."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(_weight_map(index).values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise SafetensorsError(f"shard {missing[0]!r} named by {index.name} is missing")
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
        except OSError as exc:
            raise SafetensorsError(f"{file.name}: cannot be read ({exc.strerror or exc.__class__.__name__})") \
                from None
        entries.update(found)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        for name, shard in _weight_map(index).items():
            if name not in entries:
                raise SafetensorsError(f"index names tensor {name!r} but {shard} does not hold it")
    return entries
