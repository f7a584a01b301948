"""Vocabularies from tokenizer.json alone (no tokenizer.model), as llama.cpp's converter writes them.

- Byte-level BPE (GPT-2 style): llama.cpp's "gpt2" model with the merges; the pre-tokenizer is identified by
  what the tokenizer produces on a check text (pretokenizers.py).
- Byte-fallback BPE (SentencePiece style: "▁" for spaces, <0xNN> byte tokens; Gemma, Llama 2, Mistral and
  Phi-3 tokenizers saved by transformers): llama.cpp's "llama" model. Its tokenizer merges the adjacent pair whose
  result has the highest score, so each token's score is minus the rank of the merge that makes it: the same
  order as the BPE merges (which transformers derived from SentencePiece scores in the first place).
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Any

import gguf

from tuillm.convert.errors import ConvertError
from tuillm.convert.pretokenizers import pre_tokenizer_name
from tuillm.convert.vocab_base import ADDED_SCORE, UNUSED_SCORE, Vocab, added_tokens, added_type, obj

SPACE = "▁"  # SentencePiece's space marker


def json_vocab(folder: Path, tj: dict, n_vocab: int) -> Vocab:
    """The vocabulary of ``folder``'s tokenizer.json (``tj``, parsed once), padded to ``n_vocab`` tokens."""
    path = folder / "tokenizer.json"
    model = obj(tj.get("model"))
    if model.get("type") != "BPE":
        raise ConvertError(f"{folder}: tokenizer.json is not a BPE tokenizer and there is no tokenizer.model")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or (vocab and (set(map(type, vocab.values())) != {int} or min(vocab.values()) < 0)):
        raise ConvertError(f"{path}: model.vocab is not an object of tokens to ids")
    added = added_tokens(path, tj)
    top = max(max(vocab.values(), default=-1), max((a["id"] for a in added), default=-1))
    if top >= n_vocab:
        raise ConvertError(f"{folder}: tokenizer has token id {top} but the model has only {n_vocab} embeddings")
    merges = merge_strings(path, model.get("merges"))
    tokens: list[Any] = [None] * n_vocab
    for token, i in vocab.items():
        tokens[i] = token
    if model.get("byte_fallback"):
        return _byte_fallback(path, tj, tokens, merges, added)
    types = [int(gguf.TokenType.NORMAL)] * n_vocab
    _pad(tokens, types)
    for a in added:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = added_type(a["content"], a.get("special"))
    return Vocab("gpt2", pre_tokenizer_name(tj, merges), tokens, None, types, merges=merges)


def merge_strings(path: Path, merges: Any) -> list[str]:
    """Merges as "left right" strings (gguf's form), from either form tokenizer.json uses; checked in bulk."""
    if merges is None or merges == []:
        return []
    if isinstance(merges, list) and set(map(type, merges)) == {str}:
        return merges
    if not isinstance(merges, list) or set(map(type, merges)) != {list} or set(map(len, merges)) != {2}:
        raise ConvertError(f"{path}: model.merges is not a list of token pairs")
    try:
        spaced = " " in "".join(chain.from_iterable(merges))
    except TypeError:  # a part that is not a string
        raise ConvertError(f"{path}: model.merges is not a list of token pairs") from None
    if not spaced:
        return list(map(" ".join, merges))
    # Pairs (transformers >= 4.45) may hold spaces; llama.cpp reads "left right", so a space inside a part is
    # written as U+0120 as the reference converter does.
    return [f"{a.replace(' ', 'Ġ')} {b.replace(' ', 'Ġ')}" for a, b in merges]


def _pad(tokens: list[Any], types: list[int]) -> None:
    """Name the ids no token has [PADn] and mark them unused (the embedding has more rows than the tokenizer)."""
    if None not in tokens:
        return
    for i, token in enumerate(tokens):
        if token is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = int(gguf.TokenType.UNUSED)


def _byte_fallback(path: Path, tj: dict, tokens: list[Any], merges: list[str], added: list[dict]) -> Vocab:
    add_space_prefix = _space_prefix(path, tj)
    n_vocab = len(tokens)
    ids = {t: i for i, t in enumerate(tokens) if t is not None}
    # A token no merge makes is never formed by HF's BPE; llama.cpp would form it, so only when nothing else applies.
    scores = [-float(len(merges))] * n_vocab
    for rank in range(len(merges) - 1, -1, -1):  # backwards: the first (best) merge making a token sets its score
        made = ids.get(merges[rank].replace(" ", "", 1))
        if made is not None:
            scores[made] = -float(rank)
    types = [int(gguf.TokenType.NORMAL)] * n_vocab
    for i, token in enumerate(tokens):
        if token is not None and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            types[i] = int(gguf.TokenType.BYTE)
    unk = obj(tj.get("model")).get("unk_token")
    if isinstance(unk, str) and unk in ids:
        types[ids[unk]] = int(gguf.TokenType.UNKNOWN)
    _pad(tokens, types)
    for i, kind in enumerate(types):
        if kind == gguf.TokenType.UNUSED:
            scores[i] = UNUSED_SCORE
    for a in added:
        kind = added_type(a["content"], a.get("special"))
        # llama.cpp matches user-defined tokens in raw text, where spaces are still spaces (as the reference).
        tokens[a["id"]] = a["content"] if kind == gguf.TokenType.CONTROL else a["content"].replace(SPACE, " ")
        types[a["id"]], scores[a["id"]] = kind, ADDED_SCORE
    return Vocab("llama", "default", tokens, scores, types, add_space_prefix=add_space_prefix)


def _space_prefix(path: Path, tj: dict) -> bool:
    """Whether the tokenizer puts "▁" before the text (llama.cpp's add_space_prefix); refuses layouts llama.cpp's
    SentencePiece tokenizer cannot reproduce (it turns spaces into "▁" and does nothing else)."""
    norm, pre = obj(tj.get("normalizer")), obj(tj.get("pre_tokenizer"))
    listed = norm.get("normalizers") if norm.get("type") == "Sequence" else [norm] if norm else []
    parts = [obj(p) for p in listed] if isinstance(listed, list) else [{}]
    replaces = any(p.get("type") == "Replace" and obj(p.get("pattern")).get("String") == " "
                   and p.get("content") == SPACE for p in parts)
    prepends = any(p.get("type") == "Prepend" and p.get("prepend") == SPACE for p in parts)
    if pre.get("type") == "Metaspace":
        # Splitting at each "▁" changes nothing when no token holds a "▁" past its start (llama.cpp never splits).
        splits = pre.get("split", True) and any(SPACE in t[1:] for t in obj(obj(tj.get("model")).get("vocab")))
        if pre.get("replacement", SPACE) != SPACE or splits:
            raise ConvertError(f"{path}: a Metaspace pre-tokenizer that splits words or marks spaces with another "
                               "character than '▁' is not supported (llama.cpp's SentencePiece tokenizer cannot)")
        scheme = pre.get("prepend_scheme", "always" if pre.get("add_prefix_space", True) else "never")
        replaces, prepends = True, prepends or scheme != "never"
    elif pre.get("type") == "Split" and obj(pre.get("pattern")).get("String") == " " and replaces:
        pass  # Gemma's (as transformers writes it): spaces are "▁" by then, so it splits nothing
    elif pre:
        raise ConvertError(f"{path}: byte-fallback BPE with a {pre.get('type')!r} pre-tokenizer is not supported")
    kinds = [p.get("type") for p in parts]
    others = [k for k in kinds if k not in ("Replace", "Prepend")]
    if others or not replaces:
        what = f"a {others[0]!r} normalizer" if others else "no ' ' -> '▁' replacement"
        raise ConvertError(f"{path}: byte-fallback BPE with {what} is not supported (llama.cpp only marks spaces)")
    return prepends
