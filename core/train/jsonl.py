"""A JSONL training file read: its objects with their line numbers, every bad line reported in one ``DatasetError``.

Lines end at "\\n" only: a JSON string may hold U+2028, U+0085 or the other characters ``str.splitlines`` also takes
for line ends, and those rows are examples like any other (numbered as an editor numbers them). A UTF-8 BOM at the
start (Windows editors write one) is skipped; a "\\r" before the "\\n" is whitespace to JSON. The file is read a line at
a time and no line may pass ``MAX_LINE_BYTES``, so a file of one endless line (a sparse file, a misnamed binary) is
one line of error, not a MemoryError. A number past Python's digit limit, a lone UTF-16 surrogate (``"\\ud800"``,
which no tokenizer takes) and bytes that are not UTF-8 are refused here with their line numbers, as invalid JSON is.

The same read takes the SHA-256 of the file's bytes (``read_digested``): a run checks its data, records it in its
checkpoints (core.train.resume) and encodes it from one read of each file, and the record is of the bytes it read.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled
from tuillm.core.paths import expand_user
from tuillm.core.text import shown

MAX_REPORTED = 5  # line numbers listed in an error; the rest are counted
MAX_LINE_BYTES = 16 << 20  # one example: far past any max length a run takes (the chat template stops at 4 M chars)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class DatasetError(TuillmError):
    """A training file that cannot be used; raised before any training starts."""


@dataclass(frozen=True)
class FileDigest:
    """A data file as a run records it: its path (as given, ``~`` expanded), its size and the SHA-256 of its bytes."""

    path: Path
    size: int
    sha256: str


class _Digest:
    """The SHA-256 and the count of the bytes read so far."""

    def __init__(self) -> None:
        self.sha256, self.size = hashlib.sha256(), 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)

    def of(self, path: Path) -> FileDigest:
        return FileDigest(path, self.size, self.sha256.hexdigest())


def check_cancel(cancel: threading.Event | None) -> None:
    """``Cancelled`` once ``cancel`` is set: the set-up's loops (reading, hashing, encoding the data) call it between
    lines and records, so a stop or a quit while a large dataset is read ends within a record, not after the file."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def lines_note(lines: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_REPORTED])
    more = f" and {len(lines) - MAX_REPORTED} more" if len(lines) > MAX_REPORTED else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


def keys_note(obj: dict, most: int = 8) -> str:
    """An object's keys for a one-line error: sorted, each as ``shown`` escapes it (a newline or an escape sequence in a
    key is seen, not acted on) and cut, at most ``most`` of them."""
    keys = sorted(obj)
    text = ", ".join(shown(k, 40) for k in keys[:most]) or "none"
    return text + (f" and {len(keys) - most} more" if len(keys) > most else "")


def value_note(value: object) -> str:
    """A value from a file for a one-line error: its repr (control characters escaped), cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _counted(lines: Sequence[int], what: str) -> str:
    return f"{len(lines)} line{'s' if len(lines) > 1 else ''} {what} ({lines_note(lines)})"


def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (a FIFO does not block the open, nor a device read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DatasetError(f"{path}: no such file") from None
        raise DatasetError(f"{path}: cannot read it ({(exc.strerror or str(exc)).lower()})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatasetError(f"{path}: not a file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _lines(path: Path, cancel: threading.Event | None = None,
           digest: _Digest | None = None) -> Iterator[tuple[int, bytes]]:
    """The file's lines (without their "\\n") with their numbers, each at most ``MAX_LINE_BYTES``; ``digest`` takes
    every byte read (the BOM and the "\\n"s too), so once the lines are all read it is the whole file's."""
    with _open(path) as f:
        number = 0
        while True:
            check_cancel(cancel)
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise DatasetError(f"{path}: cannot read it ({(exc.strerror or str(exc)).lower()})") from None
            if not raw:
                return
            if digest is not None:
                digest.update(raw)
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DatasetError(f"{path}: line {number} is longer than {MAX_LINE_BYTES >> 20} MiB; each line must "
                                   "be one example (a JSON object)")
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            yield number, raw.rstrip(b"\n")


def _has_lone_surrogate(text: str, obj: dict) -> bool:
    """Whether a string of ``obj`` holds a lone surrogate (only a ``\\udXXX`` escape of the line can make one)."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return False
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:  # parsed, but at the depth limit: no example anyway (the format check says so)
        return False
    return False


def file_digest(path: str | Path, cancel: threading.Event | None = None) -> FileDigest:
    """A data file's path, size and SHA-256, read as ``read_objects`` reads it (a FIFO or a folder is refused);
    ``read_digested`` takes the same digest as it reads the objects."""
    path = expand_user(path)
    digest = _Digest()
    with _open(path) as f:
        while True:
            check_cancel(cancel)
            try:
                chunk = f.read(1 << 20)
            except OSError as exc:
                raise DatasetError(f"{path}: cannot read it ({(exc.strerror or str(exc)).lower()})") from None
            if not chunk:
                return digest.of(path)
            digest.update(chunk)


def read_objects(path: str | Path, cancel: threading.Event | None = None) -> tuple[Path, list[tuple[int, dict]]]:
    """A JSONL file's objects with their line numbers; bad lines reported in one DatasetError (the checks of every
    training file: supervised data in core.train.data, preference pairs in core.train.pairs). A set ``cancel``
    stops the reading with ``Cancelled``."""
    objects, digest = read_digested(path, cancel)
    return digest.path, objects


def read_digested(path: str | Path,
                  cancel: threading.Event | None = None) -> tuple[list[tuple[int, dict]], FileDigest]:
    """``read_objects``' objects, and the digest of the bytes they were read from (``file_digest``'s, in the same
    read): a run's data is read once, checked, recorded and encoded."""
    path = expand_user(path)
    digest = _Digest()
    objects = _objects(path, _lines(path, cancel, digest))
    return objects, digest.of(path)


def _objects(path: Path, lines: Iterable[tuple[int, bytes]]) -> list[tuple[int, dict]]:
    """The objects of ``lines``, with their numbers; every bad line reported in one DatasetError."""
    objects: list[tuple[int, dict]] = []
    bad: dict[str, list[int]] = {"utf8": [], "json": [], "surrogate": [], "object": []}
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad["utf8"].append(number)
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # a number of 5,000 digits, or nested past the parser's depth
            bad["json"].append(number)
            continue
        if not isinstance(obj, dict):
            bad["object"].append(number)
        elif _has_lone_surrogate(text, obj):
            bad["surrogate"].append(number)
        else:
            objects.append((number, obj))
    if bad["utf8"]:
        raise DatasetError(f"{path}: not UTF-8 text ({lines_note(bad['utf8'])})")
    if bad["json"]:
        raise DatasetError(f"{path}: {len(bad['json'])} invalid JSON line{'s' if len(bad['json']) > 1 else ''} "
                           f"({lines_note(bad['json'])}); each line must be one JSON object")
    if bad["surrogate"]:
        raise DatasetError(f"{path}: {_counted(bad['surrogate'], 'with a lone UTF-16 surrogate escape')}, "
                           "which is no text")
    if bad["object"]:
        # A .json file of one array (the pane offers .json files) was told only "not a JSON object".
        raise DatasetError(f"{path}: {_counted(bad['object'], 'not a JSON object')}; each line must be one JSON "
                           "object (JSON Lines, not one JSON array)")
    if not objects:
        raise DatasetError(f"{path}: empty file (no examples)")
    return objects
