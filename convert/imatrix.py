"""Importance matrices: computed with llama-imatrix from a 16-bit GGUF over a calibration text, checked when a
user names one, and kept beside the outputs for later conversions of the same source.

An automatic matrix is ``<folder>/<source name>.imatrix`` (llama.cpp's GGUF imatrix format; not named .gguf, so
model lists do not take it for a model) with a sidecar ``.imatrix.json`` that records what it was computed from:
a fingerprint of the source's files (names, sizes, modification times), the calibration text's SHA-256 and the
llama.cpp version. It is reused only when all three match; a changed source or text computes a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tuillm.convert.child import run_tool, usable_cpus
from tuillm.convert.errors import ConvertError
from tuillm.convert.output import atomic_output

CALIBRATION_MAX_BYTES = 16 * 1024 * 1024  # a calibration text (llama-imatrix reads it whole)
CALIBRATION_MIN_BYTES = 2048  # below this no 512-token chunk can be made
IMATRIX_MAX_BYTES = 4 * 1024**3  # a plausible importance matrix (a 400B model's is well under this)
CONTEXT = 512  # tokens per chunk: llama-imatrix's default, what published matrices use
SUFFIX, SIDECAR = ".imatrix", ".imatrix.json"
ChunkFn = Callable[[int, int], None]  # (chunks done, chunks in all); an exception it raises stops the tool


def check_calibration(path: Path) -> Path:
    """A user's calibration text: a regular, readable UTF-8 text file of bounded size; one line otherwise."""
    path = Path(os.path.expanduser(path))
    try:
        if not path.is_file():
            raise ConvertError(f"--calibration {path}: " + ("not a regular file" if path.exists() else
                                                            "no such file"))
        size = path.stat().st_size
        if not CALIBRATION_MIN_BYTES <= size <= CALIBRATION_MAX_BYTES:
            raise ConvertError(f"--calibration {path}: {size} bytes; a calibration text has "
                               f"{CALIBRATION_MIN_BYTES} to {CALIBRATION_MAX_BYTES // 2**20} MiB of text")
        data = path.read_bytes()
    except OSError as exc:
        raise ConvertError(f"--calibration {path}: cannot read it ({exc.strerror or exc})") from None
    if b"\0" in data:
        raise ConvertError(f"--calibration {path}: binary data, not text")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConvertError(f"--calibration {path}: not UTF-8 text") from None
    return path


def check_imatrix(path: Path) -> Path:
    """A user's importance matrix: exists, is readable and looks like one (llama.cpp's GGUF imatrix with its
    per-tensor sums and counts, or the legacy .dat layout); one line otherwise."""
    path = Path(os.path.expanduser(path))
    try:
        if not path.is_file():
            raise ConvertError(f"--imatrix {path}: " + ("not a regular file" if path.exists() else "no such file"))
        if path.stat().st_size > IMATRIX_MAX_BYTES:
            raise ConvertError(f"--imatrix {path}: too large for an importance matrix")
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ConvertError(f"--imatrix {path}: cannot read it ({exc.strerror or exc})") from None
    if head[:4] == b"GGUF":
        from tuillm.convert.gguf_header import GGUFHeaderError, read_gguf_header

        try:
            header = read_gguf_header(path)
        except (GGUFHeaderError, OSError, ValueError):
            header = None
        names = [t.name for t in header.tensors] if header is not None else []
        if header is None or header.fields.get("general.type") != "imatrix" or \
                not any(n.endswith(".in_sum2") for n in names):
            raise ConvertError(f"--imatrix {path}: a GGUF file, but not an importance matrix")
        return path
    if not _legacy_plausible(head):
        raise ConvertError(f"--imatrix {path}: not an importance matrix (llama-imatrix's .gguf or .dat)")
    return path


def _legacy_plausible(head: bytes) -> bool:
    """llama.cpp's old .dat: int32 entry count, then int32 name length and the name of the first entry."""
    if len(head) < 12:
        return False
    n_entries, name_len = int.from_bytes(head[:4], "little"), int.from_bytes(head[4:8], "little")
    name = head[8:8 + name_len]
    return 0 < n_entries < 1_000_000 and 0 < name_len <= 512 and len(name) == name_len and \
        re.fullmatch(rb"[\w.\-]+", name) is not None


def compute_imatrix(model: Path, out: Path, text: str, *, threads: int | None = None,
                    on_chunk: ChunkFn | None = None) -> Path:
    """llama-imatrix over ``text`` with ``model`` (best the 16-bit GGUF), written to ``out`` through a
    temporary name. ``on_chunk`` follows the tool's chunk counter."""
    from tuillm.convert.llama_tools import find_tool

    tool = find_tool("llama-imatrix")
    state = [0, 0]  # chunks done, chunks in all (0 until the tool has said)
    seen = bytearray()

    def poll() -> None:  # also between outputs: a cancel raised by on_chunk stops the tool at once
        if on_chunk is not None:
            on_chunk(*state)

    def on_output(new: bytes) -> None:
        seen.extend(new)
        if not state[1] and (m := re.search(rb"computing over (\d+) chunks", seen)):
            state[1] = int(m.group(1))
        if done := re.findall(rb"\[(\d+)\]\d", seen):  # "[3]12.3456," after each chunk (its running perplexity)
            state[0] = int(done[-1])
        del seen[:max(0, len(seen) - 256)]  # the counter is near the end; keep a little for a split write
        poll()

    with tempfile.TemporaryDirectory(prefix="tuillm-calibration-") as tmpdir, atomic_output(out, "imatrix") as tmp:
        text_file = Path(tmpdir) / "calibration.txt"
        text_file.write_text(text, encoding="utf-8")
        args = ["-m", os.fspath(model), "-f", os.fspath(text_file), "-o", os.fspath(tmp), "--output-format",
                "gguf", "-c", str(CONTEXT), "-t", str(threads or usable_cpus())]
        rc, detail = run_tool(os.fspath(tool), args, poll, on_output=on_output)
        if rc != 0:
            if m := re.search(r"tokenizes to only (\d+) tokens", detail):
                raise ConvertError(f"the calibration text is too short: {m.group(1)} tokens, at least "
                                   f"{2 * CONTEXT} are needed")
            raise ConvertError(f"llama-imatrix failed on {model.name} (error {rc}{detail})")
        if tmp.stat().st_size == 0:
            raise ConvertError(f"llama-imatrix wrote no importance matrix for {model.name}")
    return out


@dataclass(frozen=True)
class ImatrixKey:
    """What an automatic matrix was computed from (its sidecar)."""

    source: str  # fingerprint of the source's files
    calibration: str  # SHA-256 of the text
    llama_cpp: str  # the binding's version: the tool's


def source_fingerprint(src: Path) -> str:
    """Names, sizes and modification times of a checkpoint folder's files (or of a GGUF file): a changed or
    re-downloaded source gets a new fingerprint without reading gigabytes."""
    src = Path(src)
    files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith(".")) if src.is_dir() else [src]
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def imatrix_key(src: Path, text: str) -> ImatrixKey:
    from tuillm.convert.llama_tools import binding_version

    return ImatrixKey(source_fingerprint(src), hashlib.sha256(text.encode("utf-8")).hexdigest(), binding_version())


def auto_path(folder: Path, source_name: str) -> Path:
    return Path(folder) / f"{source_name}{SUFFIX}"


def reusable(path: Path, key: ImatrixKey) -> bool:
    """Whether the automatic matrix at ``path`` was computed from exactly ``key``; a file there that tuillm did
    not make (no sidecar) is refused rather than replaced."""
    sidecar = path.with_name(path.name[: -len(SUFFIX)] + SIDECAR)
    if not path.exists():
        return False
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConvertError(f"{path} exists and tuillm did not make it: pass it with --imatrix {path}, "
                           "or move it away") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if recorded != asdict(key):
        return False
    try:
        check_imatrix(path)
    except ConvertError:
        return False
    return True


def record(path: Path, key: ImatrixKey) -> None:
    """Write the sidecar of a freshly computed automatic matrix."""
    sidecar = path.with_name(path.name[: -len(SUFFIX)] + SIDECAR)
    with atomic_output(sidecar, "part") as tmp:
        tmp.write_text(json.dumps(asdict(key), indent=1) + "\n", encoding="utf-8")
