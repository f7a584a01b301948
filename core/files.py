"""Reading a small file a user names (an attachment, a chat to import): once, bounded, and only a regular file;
writing a small file whole (``write_atomic``).

The file is opened before it is checked (``fstat`` of what was opened: no window for a swap), with O_NONBLOCK so a
FIFO with no writer does not hang the open; a folder, a FIFO, a socket or a device is refused before any read, and a
file that grew since ``fstat`` is still read only up to the limit.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from tuillm.core.errors import TuillmError
from tuillm.core.paths import expand_user


class FileRefused(TuillmError):
    """The file cannot be read as asked: missing, unreadable, not a regular file, or over the limit."""


def size_text(n: int) -> str:
    """A byte count as people read it: 1 MiB, 64 KiB, 812 bytes."""
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB" if n >= 1024 else f"{n} bytes"


# A NUL cannot be in a path (a flag cannot hold one, a pasted field or a settings string can): os.stat and open
# refuse it with a ValueError ("embedded null byte"), a bug's words; these functions say it instead.
NUL_PATH = "not a path (it holds a NUL character)"


def named_path(text: str, what: str) -> Path:
    """``text`` as a path, ``~`` expanded; an empty one (a script's unset variable, which as a path would be the
    current folder) is refused in one line naming ``what``: ``no adapter folder named (an empty path)``, as is one
    holding a NUL."""
    if not text.strip():
        raise TuillmError(f"no {what} named (an empty path)")
    if "\x00" in text:
        raise TuillmError(f"{what}: {NUL_PATH}")
    return expand_user(text)


def read_bounded(path: str | Path, max_bytes: int, *, shown: str, limit_of: str) -> bytes:
    """The bytes of the regular file ``path`` (``~`` expanded), at most ``max_bytes``; ``FileRefused`` with one line
    naming the file as ``shown`` otherwise (``limit_of``: what the limit is for, e.g. "an attachment")."""
    if not str(path).strip():  # "" (a script's unset variable): as a Path it would be the current folder
        raise FileRefused("no file named (an empty path)")
    if "\x00" in str(path):
        raise FileRefused(f"{shown}: {NUL_PATH}")
    try:
        fd = os.open(expand_user(path), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(f"{shown}: {_reason(exc)}") from None
    too_big = f"{shown} is larger than {size_text(max_bytes)}, the limit for {limit_of}"
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileRefused(f"{shown} is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{shown} is not a regular file (a pipe, socket or device)")
        if info.st_size > max_bytes:
            raise FileRefused(too_big)
        os.set_blocking(fd, True)
        data = _read(fd, max_bytes + 1)
    except OSError as exc:
        raise FileRefused(f"{shown}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileRefused(too_big)
    return data


def read_head(path: str | Path, limit: int) -> bytes:
    """The first ``limit`` bytes of the regular file ``path`` (``~`` expanded), for a look at what it holds; an
    ``OSError`` for anything else (opened without blocking: a FIFO put in its place does not hang the caller)."""
    fd = os.open(expand_user(path), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return _read(fd, limit)
    finally:
        os.close(fd)


def _read(fd: int, limit: int) -> bytes:
    parts, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


NO_SUCH_INPUT = "no such file or folder"


def input_problem(path: Path) -> str | None:
    """Why ``path`` is not a model input (a file or a folder), in a few words; None when it is one. A FIFO or
    device exists but is not one, and a loop of links is not 'no such file'."""
    if "\x00" in str(path):
        return NUL_PATH
    try:
        info = os.stat(path)
    except OSError as exc:
        return NO_SUCH_INPUT if exc.errno in (errno.ENOENT, errno.ENOTDIR) else _reason(exc)
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return None
    return "not a regular file or folder (a pipe, socket or device)"


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "a loop of symbolic links"
    return (exc.strerror or str(exc)).lower()


def check_can_write(folder: Path) -> None:
    """That ``folder`` can be made, or written into, before work that ends by writing there: a probe folder is made
    in it or in its nearest existing parent, then removed. One line (``TuillmError``) otherwise, naming the folder
    that refused, in the words every output's write uses (``describe_os_error``)."""
    from tuillm.convert.output import describe_os_error

    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tuillm-probe.", dir=base))
    except OSError as exc:
        raise TuillmError(describe_os_error(exc, base / ".tuillm-probe")) from None


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` as the whole of ``path`` (a config, an export, a cache): written under a temporary name beside it and
    renamed over it, so a crash, a full disk or a signal leaves the old file whole, and the file keeps its
    permissions (``convert.output.replacing``). An OSError passes, with nothing left behind."""
    from tuillm.convert.output import replacing  # here: this module is imported before the app's first frame

    with replacing(path, "tmp") as tmp:
        tmp.write_bytes(data)
