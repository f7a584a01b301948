"""Outputs: never over an input, never over an existing file unasked, and nothing under the final name until it
is complete (write-then-rename). Temporaries carry the writer's pid, so a later run can tell those of a killed
run (their pid no longer runs) from those of a run still going, and remove them."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tuillm.convert.errors import ConvertError

# Inside an input folder (an HF checkpoint, an adapter) only a GGUF may be added: no reader of those folders looks
# at *.gguf, while a new *.safetensors, *.json or tokenizer file would change what the folder holds.
_ADDABLE_INSIDE_INPUTS = (".gguf",)


def describe_os_error(exc: OSError, path: Path) -> str:
    """One line for an OSError met while writing ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{path.parent}: no space left on device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path.parent}: not writable"
    if exc.errno == errno.ENOTDIR:
        return f"{path.parent}: not a folder"
    if exc.errno == errno.ELOOP:
        return f"{path}: a loop of symbolic links"
    if exc.errno == errno.ENAMETOOLONG:  # the name, or its temporary's (a few characters longer)
        return f"{path}: a name too long for the file system"
    if exc.errno == errno.EEXIST:  # a folder to make where a file, or a link that leads nowhere, is
        return f"{path}: {'a loop of symbolic links' if _loops(path) else 'exists and is not a folder'}"
    if exc.errno == errno.ENOENT:
        # A folder that is there but takes no new file (/proc, /sys) answers ENOENT too.
        return f"{path.parent}: {'no new file can be made there' if path.parent.is_dir() else 'no such folder'}"
    return f"{path}: {exc.strerror or exc}"


def check_name(path: Path) -> None:
    """A name the file system cannot hold (a part over 255 bytes) is one line: every stat of it raises, and
    pathlib's exists() and is_dir() pass that OSError on."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ConvertError(describe_os_error(exc, path)) from None


def _loops(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _places(path: Path) -> list[Path]:
    """Where ``path`` is on disk: its folder resolved with its own name, and, when it is a link, its target."""
    path = Path(os.path.expanduser(path))
    try:
        places = [path.parent.resolve() / path.name]
        real = path.resolve()
    except RuntimeError:  # Python 3.11's resolve() on a loop of symbolic links
        raise ConvertError(f"{path}: a loop of symbolic links") from None
    if real not in places:
        places.append(real)
    return places


def _through_proc(path: Path) -> bool:
    """Whether ``path`` is something in /proc or links there (/dev/stdout is /proc/self/fd/1), following at most 40
    links (a new name in /proc is said by the write: no new file can be made there)."""
    for _ in range(40):
        try:
            if (path.parent.resolve() / path.name).is_relative_to("/proc") and os.path.lexists(path):
                return True
            if not path.is_symlink():
                return False
            path = path.parent / os.readlink(path)
        except (OSError, RuntimeError):
            return False
    return False


def _same(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(out: Path, inputs: Iterable[Path], *, force: bool = False) -> None:
    """Refuse an output that would destroy an input or an existing file: the one check every writer makes first.

    Refused: the input itself (a link or a hard link to it included); anything inside an input folder but a GGUF
    file; a folder that holds an input; a device, pipe or socket; a loop of links. An existing output is replaced
    only with ``force``.
    """
    out = Path(os.path.expanduser(out))
    check_name(out)
    outs = _places(out)
    for given in inputs:
        src = Path(os.path.expanduser(given))
        srcs = _places(src)
        if any(_same(o, s) for o in outs for s in srcs):
            raise ConvertError(f"{out}: output would overwrite the input")
        for s in srcs:
            if s.is_dir() and any(o.is_relative_to(s) for o in outs) and (
                    out.suffix.lower() not in _ADDABLE_INSIDE_INPUTS or out.is_dir()):
                raise ConvertError(f"{out}: output inside the input folder {src}")
            if any(s.is_relative_to(o) for o in outs):
                raise ConvertError(f"{out}: output folder holds the input {src}")
    if out.exists() and not (out.is_file() or out.is_dir()):  # --force would put a file in place of /dev/null
        raise ConvertError(f"{out}: not a regular file (a device, pipe or socket); choose another output")
    if _through_proc(out):  # /dev/stdout to a file: --force renamed the output over the link in /dev
        raise ConvertError(f"{out}: a stream of this process (/proc), not a file; choose another output")
    if not force and (out.exists() or out.is_symlink()):
        raise ConvertError(f"{out}: already exists; --force replaces it")


TEMP_MARK = "tuillm-"  # before the pid: what tells our temporaries from a user's hidden file named alike


def temp_name(path: Path, tag: str = "part") -> Path:
    """A hidden sibling of ``path`` (same folder, so the final rename is atomic), named with this process's pid."""
    return path.with_name(f".{path.name}.{TEMP_MARK}{os.getpid()}.{tag}")


def _writer_running(pid: int, written: float) -> bool:
    """Whether the process that wrote a temporary last modified at ``written`` may still be running: ``pid``
    exists (one of another user counts) and did not start after that (then the pid was reused)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        pass
    try:
        import psutil

        return psutil.Process(pid).create_time() <= written + 1
    except Exception:  # noqa: BLE001 - no psutil, or the process just ended: trust os.kill's answer
        return True


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` (``temp_name``'s, and theirs in turn) whose writer no longer runs.

    A run killed outright (SIGKILL, a power cut) cannot clean up; the next run writing the same output does.
    Temporaries of a run still going are left alone. Returns what was removed.
    """
    path = Path(path)
    pattern = re.compile(r"\.+" + re.escape(path.name) + r"\." + TEMP_MARK + r"(\d+)\.")
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no folder yet: nothing left there
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        try:
            if _writer_running(int(m.group(1)), entry.lstat().st_mtime):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:  # not ours to remove after all (permissions): leave it
            pass
    return removed


@contextmanager
def replacing(path: Path, tag: str = "part") -> Iterator[Path]:
    """The write-then-rename of every file tuillm writes: a temporary beside ``path`` (made at once, so a missing or
    read-only folder fails before any work), renamed over ``path`` when the block ends, with the permission bits
    ``path`` had (a config holding a key stays private); removed on any exception, which passes.

    Stale temporaries of ``path`` (from a killed run) are removed first.
    """
    path = Path(path)
    remove_stale(path)
    tmp = temp_name(path, tag)
    tmp.open("xb").close()
    try:
        yield tmp
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_mode(path: Path, tmp: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:  # a new file: the umask's mode, as for any file made
        return
    with contextlib.suppress(OSError):  # a file system without modes (a FAT drive may refuse chmod): written anyway
        os.chmod(tmp, mode)


@contextmanager
def atomic_output(path: Path, tag: str = "part") -> Iterator[Path]:
    """``replacing`` for the converter's outputs: a folder named as the output, and OSErrors (full disk, unwritable
    folder), become a one-line ConvertError; KeyboardInterrupt and every other exception propagate after the
    cleanup."""
    path = Path(path)
    if path.is_dir():
        raise ConvertError(f"{path}: is a folder (give the output file name)")
    try:
        with replacing(path, tag) as tmp:
            yield tmp
    except OSError as exc:
        raise ConvertError(describe_os_error(exc, path)) from None
