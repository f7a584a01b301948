"""Logits and tokens of a GGUF in llama.cpp, for the conversion quality report and the parity tests.

Every load is ``loader.quiet_llama``: nothing printed, and the terminal's file descriptors left alone (the TUI).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuillm.core.llama.loader import quiet_llama

if TYPE_CHECKING:
    from llama_cpp import Llama

def load_llama(path: Path, *, n_ctx: int = 1024, logits_all: bool = False, threads: int | None = None,
               lora: Path | None = None) -> Llama:
    """A quiet ``llama_cpp.Llama`` for ``path`` (``lora``: a GGUF adapter applied at scale 1; ``threads``: None
    is the chat's default, ``hardware.default_threads``)."""
    from tuillm.core.models.hardware import default_threads

    n_threads = threads if threads is not None else default_threads()
    return quiet_llama(str(path), n_ctx=n_ctx, logits_all=logits_all, n_threads=n_threads,
                        lora_path=str(lora) if lora is not None else None)


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
    llm = quiet_llama(str(path), vocab_only=True)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    finally:
        llm.close()
