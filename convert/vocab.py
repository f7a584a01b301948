"""The tokenizer of an HF folder as GGUF metadata: BPE from tokenizer.json, SentencePiece from tokenizer.model.

Merges, special token ids, add_bos/add_eos and the chat template come from gguf's ``SpecialVocab``; the token
list and types are built here so that special added tokens become CONTROL (llama.cpp then matches them as
specials) and the list is padded to the embedding rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from tuillm.convert.checkpoint import read_json_object
from tuillm.convert.errors import ConvertError

# llama.cpp pre-tokenizer names, recognised from the tokenizer.json pre_tokenizer they stand for.
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SUPPORTED_PRE = ("gpt-2", "smollm", "llama-bpe", "qwen2")

_LOOKS_SPECIAL = re.compile(r"^(<\|.*\|>|<(s|/s|unk|pad|mask|bos|eos|eot|sep|cls)>|\[(PAD|UNK|CLS|SEP|MASK)\])$")


@dataclass
class Vocab:
    model: str  # "gpt2" (BPE) or "llama" (SentencePiece)
    pre: str
    tokens: list[str]
    scores: list[float] | None
    types: list[int]
    special: gguf.SpecialVocab | None = None  # merges, special ids, add_bos/eos, template: read with the rest


def _obj(value: Any) -> dict:
    """A JSON object from a tokenizer file, or {} for anything else (the shape checks then refuse what is missing)."""
    return value if isinstance(value, dict) else {}


def _pre_parts(pre: Any, depth: int = 0) -> list[dict]:
    if not isinstance(pre, dict) or not pre:
        return []
    if pre.get("type") == "Sequence":
        subs = pre.get("pretokenizers")
        if depth > 4 or not isinstance(subs, list):  # real sequences are flat; deeper is not a known tokenizer
            return [pre]
        return [p for sub in subs for p in _pre_parts(sub, depth + 1)]
    return [pre]


def bpe_pre_name(tokenizer_json: dict) -> str:
    """The llama.cpp name of the pre-tokenizer described by tokenizer.json, or ConvertError when unknown."""
    parts = _pre_parts(tokenizer_json.get("pre_tokenizer"))
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        regex = _obj(parts[0].get("pattern")).get("Regex")
        if regex == _LLAMA3_REGEX:
            return "llama-bpe"
        if regex == _QWEN2_REGEX:
            return "qwen2"
    shown = [k if isinstance(k, str) else type(k).__name__ for k in kinds]
    raise ConvertError(f"tokenizer.json: unknown BPE pre-tokenizer {shown!r}; known: {', '.join(SUPPORTED_PRE)}")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _added_tokens(path: Path, tj: dict) -> list[dict]:
    """tokenizer.json's added_tokens, each checked to have an id and a content."""
    added = tj.get("added_tokens", [])
    if not isinstance(added, list) or not all(
            isinstance(a, dict) and _is_id(a.get("id")) and isinstance(a.get("content"), str) for a in added):
        raise ConvertError(f"{path}: added_tokens is not a list of tokens with an id and a content")
    return added


def _bpe_vocab(folder: Path, n_vocab: int) -> Vocab:
    path = folder / "tokenizer.json"
    tj = read_json_object(path)
    model = _obj(tj.get("model"))
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ConvertError(f"{folder}: tokenizer.json is not a byte-level BPE and there is no tokenizer.model")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not all(_is_id(i) for i in vocab.values()):
        raise ConvertError(f"{path}: model.vocab is not an object of tokens to ids")
    reverse = {i: t for t, i in vocab.items()}
    added = {a["id"]: a for a in _added_tokens(path, tj)}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        if i in added:
            tokens.append(added[i]["content"])
            special = added[i].get("special") or _LOOKS_SPECIAL.match(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        elif i in reverse:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    top = max([*reverse, *added], default=-1)
    if top >= n_vocab:
        raise ConvertError(f"{folder}: tokenizer has token id {top} but the model has only {n_vocab} embeddings")
    return Vocab("gpt2", bpe_pre_name(tj), tokens, None, types)


def _spm_vocab(folder: Path, n_vocab: int) -> Vocab:
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError:
        raise ConvertError("reading tokenizer.model needs the sentencepiece package (pip install sentencepiece)") \
            from None
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(folder / "tokenizer.model"))
    except (OSError, RuntimeError):
        raise ConvertError(f"{folder / 'tokenizer.model'}: not a SentencePiece model") from None
    if sp.vocab_size() > n_vocab:
        raise ConvertError(f"{folder}: tokenizer has {sp.vocab_size()} tokens but the model only {n_vocab} embeddings")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [int(gguf.TokenType.UNUSED)] * n_vocab
    for i in range(sp.vocab_size()):
        tokens[i] = sp.IdToPiece(i)
        scores[i] = sp.GetScore(i)
        kind = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            kind = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            kind = gguf.TokenType.BYTE
        types[i] = kind
    # Added tokens (chat markers...) override or extend the SentencePiece pieces.
    added: list[tuple[int, str, bool]] = []
    if (folder / "added_tokens.json").is_file():
        extra = read_json_object(folder / "added_tokens.json")
        if not all(_is_id(i) for i in extra.values()):
            raise ConvertError(f"{folder / 'added_tokens.json'}: not an object of tokens to ids")
        added += [(i, t, False) for t, i in extra.items()]
    if (folder / "tokenizer.json").is_file():
        path = folder / "tokenizer.json"
        added += [(a["id"], a["content"], bool(a.get("special"))) for a in _added_tokens(path, read_json_object(path))]
    for i, text, special in added:
        if i >= n_vocab:
            raise ConvertError(f"{folder}: added token id {i} is past the model's {n_vocab} embeddings")
        if i < sp.vocab_size() and tokens[i] == text:
            continue  # a base piece repeated in added_tokens keeps its score and type
        tokens[i] = text
        scores[i] = -1000.0
        types[i] = gguf.TokenType.CONTROL if special or _LOOKS_SPECIAL.match(text) else gguf.TokenType.USER_DEFINED
    return Vocab("llama", "default", tokens, scores, types)


def read_vocab(folder: Path, n_vocab: int) -> Vocab:
    """Tokens of the folder's tokenizer, padded to ``n_vocab`` (the embedding rows), with its special tokens:
    every tokenizer file is read here, before anything is written."""
    folder = Path(folder)
    if (folder / "tokenizer.model").is_file():
        vocab = _spm_vocab(folder, n_vocab)
    elif (folder / "tokenizer.json").is_file():
        vocab = _bpe_vocab(folder, n_vocab)
    else:
        raise ConvertError(f"{folder}: no tokenizer (tokenizer.json or tokenizer.model)")
    vocab.special = _special_vocab(folder, vocab)
    return vocab


def _special_vocab(folder: Path, vocab: Vocab) -> gguf.SpecialVocab:
    """gguf's reader of merges, special token ids and add_bos/add_eos. It trusts the files' shapes, so a file of
    the wrong shape (a list where an object belongs) is refused here in one line rather than mid-write."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            read_json_object(folder / name)  # valid JSON objects, or a one-line error naming the file
    try:
        special = gguf.SpecialVocab(folder, load_merges=vocab.model == "gpt2", n_vocab=len(vocab.tokens))
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        raise ConvertError(f"{folder}: tokenizer files of an unexpected shape ({exc.__class__.__name__})") from None
    for kind in ("bos", "eos"):
        special.add_special_token.setdefault(kind, False)
    return special


def add_vocab(writer: gguf.GGUFWriter, folder: Path, vocab: Vocab, add_space_prefix: bool | None = None) -> None:
    """Write the tokenizer keys of ``vocab`` (from ``read_vocab(folder, ...)``); add_bos/add_eos are always written
    (False when the tokenizer adds nothing)."""
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if add_space_prefix is not None:
        writer.add_add_space_prefix(add_space_prefix)
    special = vocab.special if vocab.special is not None else _special_vocab(folder, vocab)
    special.add_to_gguf(writer, quiet=True)
