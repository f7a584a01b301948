"""A GGUF's tokenizer through llama.cpp: the vocabulary only (no weights), for counting and cutting tokens.

Built on ``core.llama.loader.quiet_llama`` (no terminal output, even under the TUI); which private part of
llama-cpp-python holds the special tokens is known here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuillm.core.errors import ModelFileError
from tuillm.core.llama.loader import quiet_llama


@dataclass(frozen=True)
class SpecialToken:
    id: int
    text: str


@dataclass
class GGUFVocab:
    """A GGUF's vocabulary: tokenize and detokenize with special tokens as text, its BOS/EOS, its template."""

    path: Path
    bos: SpecialToken | None
    eos: SpecialToken | None
    adds_bos: bool  # llama.cpp puts BOS before a text it tokenizes for the model
    chat_template: str | None
    _llm: Any

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def detokenize(self, ids: list[int]) -> str:
        return self._llm.detokenize(ids, special=True).decode("utf-8", errors="ignore")


def _special(model: Any, token_id: int) -> SpecialToken | None:
    return SpecialToken(token_id, model.token_get_text(token_id)) if token_id >= 0 else None


def open_vocab(path: Path) -> GGUFVocab:
    """The vocabulary of the GGUF at ``path``; a ModelFileError naming it when llama.cpp cannot read it."""
    try:
        llm = quiet_llama(str(path), vocab_only=True)  # no terminal output, even under the TUI
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(path, f"llama.cpp cannot read its vocabulary ({exc})") from None
    model = llm._model  # llama-cpp-python keeps the special tokens on its internal model object
    template = llm.metadata.get("tokenizer.chat_template")  # read by llama.cpp already (gguf's reader is slow)
    return GGUFVocab(Path(path), _special(model, model.token_bos()), _special(model, model.token_eos()),
                     bool(model.add_bos_token()), template or None, llm)
