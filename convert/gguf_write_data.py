"""A GGUF file's tensor data, encoded and written in parallel at offsets known in advance.

The header fixes every tensor's offset, so the file is sized once and each piece (a row range of a tensor) is
encoded and written with ``os.pwrite`` at its place by the thread that encoded it: reading, encoding (numpy
releases the GIL) and writing overlap across the pool, with no ordering step between them. At most
``threads + 1`` pieces are in flight, so memory stays a few pieces whatever the model size. Padding between
tensors is never written: the file is extended with ``ftruncate``, whose new bytes read as zeros.

The one descriptor is closed by whoever lets go of it last: a worker still running after an interrupted clean-up
(a second Ctrl-C during it) keeps it open, so its write can never land in a descriptor number reused since.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuillm.convert.errors import ConvertError

# Linux writes at most this many bytes per call; larger pieces are written in several calls.
_MAX_WRITE = 1 << 30


@dataclass(frozen=True, slots=True)
class Piece:
    """A part of one tensor's data: ``encode`` gives exactly ``nbytes`` bytes, written at ``offset``."""

    tensor: int  # the tensor's index in the header's table (for progress)
    offset: int
    nbytes: int
    encode: Callable[[], np.ndarray]


def write_at(fd: int, data: bytes | memoryview | np.ndarray, offset: int) -> None:
    """All of ``data`` at ``offset`` of ``fd`` (a short write is continued, not lost)."""
    view = memoryview(data).cast("B")  # C-contiguous (numpy arrays: np.ascontiguousarray first)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:done + _MAX_WRITE], offset + done)
        if n <= 0:
            raise OSError(f"write returned {n}")
        done += n


class SharedFile:
    """A descriptor used by several threads, closed when the last of them releases it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._users = 1  # the opener's own hold
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self._users += 1

    def release(self, _: object = None) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            os.close(self.fd)


def _write_piece(out: SharedFile, piece: Piece, name: Callable[[int], str]) -> Piece:
    data = np.ascontiguousarray(piece.encode())
    if data.nbytes != piece.nbytes:
        raise ConvertError(f"tensor {name(piece.tensor)}: encoded {data.nbytes} bytes where {piece.nbytes} were "
                           "planned (internal error)")
    write_at(out.fd, data, piece.offset)
    return piece


def _submit(pool: ThreadPoolExecutor, out: SharedFile, piece: Piece, name: Callable[[int], str]) -> Future[Piece]:
    """The piece submitted, holding ``out`` until it is done, has failed or is cancelled."""
    out.hold()
    try:
        fut = pool.submit(_write_piece, out, piece, name)
    except BaseException:
        out.release()
        raise
    fut.add_done_callback(out.release)
    return fut


def write_pieces(out: SharedFile, pieces: Iterable[Piece], threads: int, done: Callable[[Piece], None],
                 name: Callable[[int], str] = str) -> None:
    """Encode and write every piece in a pool of ``threads``; ``done`` is called in this thread after each one.

    An exception in a piece or in ``done`` (a cancel) stops the submitting; queued pieces are dropped and this
    returns (raising) only once the running ones have finished, so nothing writes to the file afterwards.
    """
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tuillm-convert") as pool:
        pending: set[Future[Piece]] = set()
        try:
            for piece in pieces:
                if len(pending) > threads:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        done(fut.result())
                pending.add(_submit(pool, out, piece, name))
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    done(fut.result())
        finally:
            for fut in pending:
                fut.cancel()


def write_gguf(path: Path, header: bytes, size: int, pieces: Iterable[Piece], threads: int,
               done: Callable[[Piece], None], name: Callable[[int], str] = str) -> None:
    """Write ``header`` at the start of the (existing, empty) file ``path``, size it to ``size`` bytes and fill in
    the pieces. The caller removes the file on failure (``output.atomic_output``)."""
    out = SharedFile(os.open(path, os.O_WRONLY))
    try:
        write_at(out.fd, header, 0)
        os.ftruncate(out.fd, size)
        write_pieces(out, pieces, threads, done, name)
    finally:
        out.release()
