"""An HF checkpoint folder opened for conversion: its config and its tensors, read one at a time without torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from tuillm.convert.errors import ConvertError, JSONFileError
from tuillm.convert.hparams import check_config
from tuillm.convert.safetensors_header import (
    SafetensorsError,
    TensorEntry,
    load_json,
    read_checkpoint,
    small_file_problem,
)

# safetensors dtype -> numpy dtype of the raw bytes (bf16 is read as uint16 and widened with a bit shift).
RAW_DTYPES = {
    "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """Widen bf16 bit patterns (uint16) to float32: bf16 is the top half of a float32."""
    out = np.empty(raw.shape, dtype=np.uint32)
    np.left_shift(raw, 16, out=out, dtype=np.uint32)  # one pass, no uint32 temporary
    return out.view(np.float32)


@cache
def _bf16_to_f16_table() -> np.ndarray:
    with np.errstate(over="ignore"):  # bf16 values beyond float16's range become inf, as the cast makes them
        return bf16_to_f32(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)).astype(np.float16)


# A source of scratch memory: a uint8 array of at least the asked bytes (reused by the caller, piece after piece).
Buffer = Callable[[int], np.ndarray]


def new_array(shape: tuple[int, ...], dtype: np.dtype | type, buffer: Buffer | None = None) -> np.ndarray:
    """An uninitialised array of ``shape``: new, or laid over the start of ``buffer``'s memory."""
    if buffer is None:
        return np.empty(shape, dtype=dtype)
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return buffer(size)[:size].view(dtype).reshape(shape)


def bf16_to_f16(raw: np.ndarray, buffer: Buffer | None = None) -> np.ndarray:
    """bf16 bit patterns (uint16) to float16, bit for bit what float32 -> float16 gives (round to nearest even),
    by a lookup in a table of all 65536 patterns: one gather instead of a widening and a cast.

    Gathered in slices: ``np.take`` turns its indices into an int64 array first (4x the input), so a slice's
    worth of them stays small and in cache.
    """
    table = _bf16_to_f16_table()
    flat = np.ascontiguousarray(raw).reshape(-1)
    out = new_array(flat.shape, np.float16, buffer)
    for i in range(0, flat.size, _GATHER_SLICE):
        np.take(table, flat[i:i + _GATHER_SLICE], out=out[i:i + _GATHER_SLICE])
    return out.reshape(raw.shape)


_GATHER_SLICE = 1 << 18


@dataclass
class Checkpoint:
    folder: Path
    config: dict
    tensors: dict[str, TensorEntry]

    def read_raw(self, name: str, rows: tuple[int, int] | None = None, buffer: Buffer | None = None) -> np.ndarray:
        """The tensor's stored values (bf16 as uint16), or rows [start, end) of it, read into a new array (or into
        ``buffer``'s memory).

        One read straight into the array's memory (the file's pages stay in the page cache, never in our RSS, so
        memory does not grow with the checkpoint size); the read releases the GIL, so readers run in parallel.
        """
        entry = self.tensors[name]
        dtype = RAW_DTYPES.get(entry.dtype)
        if dtype is None:
            raise ConvertError(f"{entry.file.name}: tensor {name} has unsupported dtype {entry.dtype}")
        shape, begin, count = entry.shape, entry.begin, entry.n_elements
        if rows is not None:
            row_elems = count // shape[0] if shape and shape[0] else 0
            shape = (rows[1] - rows[0], *shape[1:])
            begin += rows[0] * row_elems * np.dtype(dtype).itemsize
            count = shape[0] * row_elems
        out = new_array(shape, dtype, buffer)
        if count == 0:
            return out
        view = memoryview(out).cast("B")
        with entry.file.open("rb", buffering=0) as f:
            f.seek(begin)
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    raise ConvertError(f"{entry.file.name}: ends inside tensor {name} (the file changed while "
                                       "it was read)")
                got += n
        return out


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object; a JSONFileError (one line, naming the path) otherwise."""
    try:
        if problem := small_file_problem(path):
            raise JSONFileError(path, problem)
        text = path.read_bytes()
    except OSError as exc:
        raise JSONFileError(path, f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    try:
        data = load_json(text)
    except SafetensorsError as exc:
        raise JSONFileError(path, str(exc)) from None
    if not isinstance(data, dict):
        raise JSONFileError(path, "not a JSON object")
    return data


def read_config(folder: Path) -> dict:
    """config.json of an HF folder, its hyper-parameters checked (``check_config``): the one way it is read."""
    path = Path(folder) / "config.json"
    config = read_json_object(path)
    try:
        check_config(config)
    except ConvertError as exc:
        raise JSONFileError(path, str(exc)) from None
    return config


def open_checkpoint(folder: Path) -> Checkpoint:
    """Read config.json and every safetensors header; one-line ConvertError on anything missing or broken."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConvertError(f"{folder}: not a folder (expected an HF checkpoint folder)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConvertError(f"{folder}: no config.json (not an HF checkpoint folder)")
    config = read_config(folder)
    try:
        tensors = read_checkpoint(folder)
    except SafetensorsError as exc:
        raise ConvertError(f"{folder}: {exc}") from None
    if not tensors:
        raise ConvertError(f"{folder}: no .safetensors weights (pytorch .bin checkpoints are not read)")
    return Checkpoint(folder, config, tensors)
