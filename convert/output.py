"""Write-then-rename for output files: nothing ever appears under the final name until it is complete."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuillm.convert.errors import ConvertError


def describe_os_error(exc: OSError, path: Path) -> str:
    """One line for an OSError met while writing ``path``."""
    if exc.errno == errno.ENOSPC:
        return f"{path.parent}: no space left on device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path.parent}: not writable"
    if exc.errno == errno.ENOTDIR:
        return f"{path.parent}: not a folder"
    if exc.errno == errno.ENOENT:
        return f"{path.parent}: no such folder"
    return f"{path}: {exc.strerror or exc}"


def temp_name(path: Path, tag: str = "part") -> Path:
    """A hidden sibling of ``path`` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{tag}")


@contextmanager
def atomic_output(path: Path, tag: str = "part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success, remove it on any failure.

    OSErrors (full disk, unwritable folder) become a one-line ConvertError; KeyboardInterrupt and every other
    exception propagate after the cleanup.
    """
    path = Path(path)
    if path.is_dir():
        raise ConvertError(f"{path}: is a folder (give the output file name)")
    tmp = temp_name(path, tag)
    try:
        tmp.open("xb").close()  # fails early and clearly when the folder is missing or read-only
    except OSError as exc:
        raise ConvertError(describe_os_error(exc, path)) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConvertError(describe_os_error(exc, path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
