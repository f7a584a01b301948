"""Logits and tokens of a GGUF in llama.cpp, for the conversion quality report and the parity tests.

Every load goes through ``loader.new_llama`` and prints nothing, without ``verbose=False``: that points fds 1 and 2
at /dev/null for the whole load, blanking a TUI drawn on them. The load is verbose instead; llama.cpp's own log
goes to the loader's capture and the Python-level lines of ``Llama.__init__`` (system info, the metadata dict) to
a buffer that is dropped, so the CLI's stderr stays clean too.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuillm.core.llama.loader import new_llama

if TYPE_CHECKING:
    from llama_cpp import Llama

# sys.stdout/stderr are process-wide: two quiet loads at once would restore each other's.
_REDIRECT_LOCK = threading.Lock()


def load_llama(path: Path, *, n_ctx: int = 1024, logits_all: bool = False, threads: int | None = None,
               lora: Path | None = None) -> Llama:
    """A quiet ``llama_cpp.Llama`` for ``path`` (``lora``: a GGUF adapter applied at scale 1)."""
    return _quiet_llama(path, n_ctx=n_ctx, logits_all=logits_all, n_threads=threads,
                        lora_path=str(lora) if lora is not None else None)


def _quiet_llama(path: Path, **kwargs: Any) -> Llama:
    chatter = io.StringIO()
    with _REDIRECT_LOCK, contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        llm = new_llama(str(path), verbose=True, **kwargs)
    llm.verbose = False  # no per-call prints from now on
    return llm


def llama_logits(path: Path, ids: list[int], *, threads: int | None = None, lora: Path | None = None) -> np.ndarray:
    """llama.cpp logits for every position of ``ids`` (shape [len(ids), n_vocab], float32)."""
    llm = load_llama(path, n_ctx=max(64, len(ids)), logits_all=True, threads=threads, lora=lora)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def llama_tokenize(path: Path, text: str) -> list[int]:
    """The GGUF's own tokenization of ``text`` (no BOS, special tokens as plain text)."""
    llm = _quiet_llama(path, vocab_only=True)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    finally:
        llm.close()
