"""A GGUF file's tensor data, encoded and written in parallel at offsets known in advance.

The header fixes every tensor's offset, so the file is sized once and each piece (a row range of a tensor) is
encoded and written with ``os.pwrite`` at its place by the thread that encoded it: reading, encoding (numpy
releases the GIL) and writing overlap across the pool, with no ordering step between them. At most
``threads + 1`` pieces are in flight, so memory stays a few pieces whatever the model size. Padding between
tensors is never written: the file is extended with ``ftruncate``, whose new bytes read as zeros.
"""

from __future__ import annotations

import os
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


def _write_piece(fd: int, piece: Piece, name: Callable[[int], str]) -> Piece:
    data = np.ascontiguousarray(piece.encode())
    if data.nbytes != piece.nbytes:
        raise ConvertError(f"tensor {name(piece.tensor)}: encoded {data.nbytes} bytes where {piece.nbytes} were "
                           "planned (internal error)")
    write_at(fd, data, piece.offset)
    return piece


def write_pieces(fd: int, pieces: Iterable[Piece], threads: int, done: Callable[[Piece], None],
                 name: Callable[[int], str] = str) -> None:
    """Encode and write every piece in a pool of ``threads``; ``done`` is called in this thread after each one.

    An exception in a piece or in ``done`` (a cancel) stops the submitting; queued pieces are dropped and this
    returns (raising) only once the running ones have finished, so no thread writes to ``fd`` afterwards.
    """
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tuillm-convert") as pool:
        pending: set[Future[Piece]] = set()
        try:
            for piece in pieces:
                if len(pending) > threads:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        done(fut.result())
                pending.add(pool.submit(_write_piece, fd, piece, name))
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
    fd = os.open(path, os.O_WRONLY)
    try:
        write_at(fd, header, 0)
        os.ftruncate(fd, size)
        write_pieces(fd, pieces, threads, done, name)
    finally:
        os.close(fd)
