"""The tokenizer of an HF folder as GGUF metadata: SentencePiece from tokenizer.model, else BPE from
tokenizer.json (vocab_bpe.py: byte-level or byte-fallback).

Special token ids, add_bos/add_eos and the chat template come from gguf's ``SpecialVocab``; tokens, types,
scores and merges are built here so that special added tokens become CONTROL (llama.cpp then matches them as
specials) and the list is padded to the embedding rows.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import gguf

from tuillm.convert.checkpoint import read_json_object
from tuillm.convert.errors import ConvertError
from tuillm.convert.safetensors_header import small_file_problem
from tuillm.convert.vocab_base import ADDED_SCORE, UNUSED_SCORE, Vocab, added_tokens, added_type, is_id
from tuillm.convert.vocab_bpe import json_vocab

__all__ = ["Vocab", "add_vocab", "read_vocab"]

# The files gguf's SpecialVocab reads besides tokenizer.json.
_SPECIAL_FILES = ("tokenizer_config.json", "config.json", "chat_template.jinja", "chat_template.json")


def _spm_vocab(folder: Path, n_vocab: int, tj: dict | None) -> Vocab:
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
    scores = [UNUSED_SCORE] * n_vocab
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
        types[i] = int(kind)
    # Added tokens (chat markers...) override or extend the SentencePiece pieces.
    added: list[tuple[int, str, bool]] = []
    if (folder / "added_tokens.json").is_file():
        extra = read_json_object(folder / "added_tokens.json")
        if not all(is_id(i) for i in extra.values()):
            raise ConvertError(f"{folder / 'added_tokens.json'}: not an object of tokens to ids")
        added += [(i, t, False) for t, i in extra.items()]
    if tj is not None:
        added += [(a["id"], a["content"], bool(a.get("special")))
                  for a in added_tokens(folder / "tokenizer.json", tj)]
    for i, text, special in added:
        if i >= n_vocab:
            raise ConvertError(f"{folder}: added token id {i} is past the model's {n_vocab} embeddings")
        if i < sp.vocab_size() and tokens[i] == text:
            continue  # a base piece repeated in added_tokens keeps its score and type
        tokens[i] = text
        scores[i] = ADDED_SCORE
        types[i] = added_type(text, special)
    return Vocab("llama", "default", tokens, scores, types)


def read_vocab(folder: Path, n_vocab: int) -> Vocab:
    """Tokens of the folder's tokenizer, padded to ``n_vocab`` (the embedding rows), with its special tokens:
    every tokenizer file is read here, once, before anything is written."""
    folder = Path(folder)
    for name in ("tokenizer.model", *_SPECIAL_FILES):  # read whole by sentencepiece and SpecialVocab (copied first)
        if (folder / name).is_file() and (problem := small_file_problem(folder / name)):
            raise ConvertError(f"{folder / name}: {problem}")
    tj = read_json_object(folder / "tokenizer.json") if (folder / "tokenizer.json").is_file() else None
    if (folder / "tokenizer.model").is_file():
        vocab = _spm_vocab(folder, n_vocab, tj)
    elif tj is not None:
        vocab = json_vocab(folder, tj, n_vocab)
    else:
        raise ConvertError(f"{folder}: no tokenizer (tokenizer.json or tokenizer.model)")
    vocab.special = _special_vocab(folder, vocab, tj)
    return vocab


def _special_vocab(folder: Path, vocab: Vocab, tj: dict | None) -> gguf.SpecialVocab:
    """gguf's reader of special token ids, add_bos/add_eos and the chat template. It trusts the files' shapes, so
    a file of the wrong shape (a list where an object belongs) is refused here in one line rather than mid-write."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            read_json_object(folder / name)  # valid JSON objects, or a one-line error naming the file
    try:
        if tj is None:
            special = gguf.SpecialVocab(folder, n_vocab=len(vocab.tokens))
        else:
            special = _special_from_view(folder, vocab, tj)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        raise ConvertError(f"{folder}: tokenizer files of an unexpected shape ({exc.__class__.__name__})") from None
    if vocab.merges:
        special.merges = vocab.merges
    for kind in ("bos", "eos"):
        special.add_special_token.setdefault(kind, False)
    return special


def _special_from_view(folder: Path, vocab: Vocab, tj: dict) -> gguf.SpecialVocab:
    """SpecialVocab of ``folder`` without parsing its (large) tokenizer.json again: it is shown a copy of the
    folder's small tokenizer files with a tokenizer.json of only the parts it reads (added tokens and the
    post-processor)."""
    with tempfile.TemporaryDirectory(prefix="tuillm-vocab-") as tmp:
        view = Path(tmp)
        for name in _SPECIAL_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, view / name)
        if (folder / "additional_chat_templates").is_dir():
            shutil.copytree(folder / "additional_chat_templates", view / "additional_chat_templates")
        small = {"added_tokens": tj.get("added_tokens") or [], "post_processor": tj.get("post_processor")}
        (view / "tokenizer.json").write_text(json.dumps(small), encoding="utf-8")
        return gguf.SpecialVocab(view, n_vocab=len(vocab.tokens))


def add_vocab(writer: gguf.GGUFWriter, folder: Path, vocab: Vocab, add_space_prefix: bool | None = None) -> None:
    """Write the tokenizer keys of ``vocab`` (from ``read_vocab(folder, ...)``); add_bos/add_eos are always written
    (False when the tokenizer adds nothing). ``add_space_prefix``: the architecture's, for SentencePiece
    vocabularies; what a byte-fallback tokenizer.json says wins."""
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    space = vocab.add_space_prefix if vocab.add_space_prefix is not None else add_space_prefix
    if space is not None:
        writer.add_add_space_prefix(space)
    special = vocab.special if vocab.special is not None else _special_vocab(folder, vocab, None)
    special.add_to_gguf(writer, quiet=True)
