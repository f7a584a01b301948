"""What every vocabulary reader shares: the result type and the checks of tokenizer files' shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from tuillm.convert.errors import ConvertError

# Added tokens that are control tokens even when a tokenizer does not mark them special (as llama.cpp's
# converter's does_token_look_special, plus the usual bracketed names).
LOOKS_SPECIAL = re.compile(r"^(<\|.*\|>|<｜.*｜>|<unused.*>|<2mass>|\[@BOS@\]"
                           r"|<(s|/s|unk|pad|mask|bos|eos|eot|sep|cls)>|\[(PAD|UNK|CLS|SEP|MASK)\])$", re.DOTALL)


# Scores of padding rows and of added tokens, as llama.cpp's converter writes them for SentencePiece vocabularies.
UNUSED_SCORE = -10000.0
ADDED_SCORE = -1000.0


@dataclass
class Vocab:
    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece, or byte-fallback BPE)
    pre: str
    tokens: list[str]
    scores: list[float] | None
    types: list[int]
    special: gguf.SpecialVocab | None = None  # merges, special ids, add_bos/eos, template: read with the rest
    merges: list[str] | None = None  # byte-level BPE only, as "left right"
    add_space_prefix: bool | None = None  # what the tokenizer itself says; None: the architecture's default


def obj(value: Any) -> dict:
    """A JSON object from a tokenizer file, or {} for anything else (the shape checks then refuse what is missing)."""
    return value if isinstance(value, dict) else {}


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def added_tokens(path: Path, tj: dict) -> list[dict]:
    """tokenizer.json's added_tokens, each checked to have an id and a content."""
    added = tj.get("added_tokens", [])
    if added is None:
        return []
    if not isinstance(added, list) or not all(
            isinstance(a, dict) and is_id(a.get("id")) and isinstance(a.get("content"), str) for a in added):
        raise ConvertError(f"{path}: added_tokens is not a list of tokens with an id and a content")
    return added


def added_type(content: str, special: Any) -> int:
    """CONTROL for special added tokens (llama.cpp matches them only as specials), USER_DEFINED for the rest."""
    return int(gguf.TokenType.CONTROL if special or LOOKS_SPECIAL.match(content) else gguf.TokenType.USER_DEFINED)
