"""The first examples of a training file as the model will see them: rendered with the base's chat template,
split into the pieces that carry loss and those that do not, with token counts and the ``max_len`` cut.

It goes through core.train.data's ``tokenize_record`` (the same reading, checks, rendering, masking and cut as the
training job) and needs no torch: an HF folder's ``tokenizer.json`` is read with the ``tokenizers`` library and its
template with core.models.metadata; a GGUF's template and tokenizer come from llama.cpp (core.llama.tokenizer:
vocabulary only, no weights). Counts are those of the engine for an HF base; for a GGUF base (trained through its
dequantized HF copy) they may differ by a token.

Only what is shown is tokenized: a text is tokenized as a prefix long enough for ``max_len`` tokens and a margin
(``PrefixTokenizer``), so a 5 MB example costs what a short one does (the Rust tokenizer holds the GIL: a whole 5 MB
example froze the app for seconds). The count of such an example is then "more than max_len", not a number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuillm.core.chat.template import ChatTemplate
from tuillm.core.errors import ModelFileError
from tuillm.core.train.data import Dataset, TextEnds, Tokenized, load_dataset, tokenize_record

PROMPT, TRAINED, CUT = "prompt", "trained", "cut"  # a piece: no loss / carries loss / beyond max_len (dropped)
# Tokens of a prefix beyond those kept: its last tokens may merge otherwise once the text goes on (a word or a
# special token cut in two), so they must fall past the cut.
PREFIX_MARGIN = 16
FIRST_CHARS_PER_TOKEN = 8  # the first prefix tried; most text needs about 4 (the prefix doubles until enough)


@dataclass
class BaseTokenizer:
    """What the preview needs from a base model: its template, a tokenizer (ids and, for the cut, the character
    length of a token prefix) and what raw text gets around it."""

    template: ChatTemplate | None
    tokenize: Callable[[str], list[int]]
    prefix_chars: Callable[[str, int], int]  # (text, n_tokens) -> characters of text those tokens cover
    ends: TextEnds = TextEnds()


@dataclass
class PreviewExample:
    line: int
    pieces: list[tuple[str, str]]  # (text, PROMPT | TRAINED | CUT), in order
    tokens: int
    trained_tokens: int  # after the cut
    dropped: bool = False  # nothing to learn left after the cut: training skips it
    exact: bool = True  # False: only a prefix was tokenized, ``tokens`` is a lower bound (past max_len)

    @property
    def cut(self) -> bool:
        return any(kind == CUT for _, kind in self.pieces)


@dataclass
class Preview:
    path: Path
    format: str
    count: int
    template: str  # where the template came from
    examples: list[PreviewExample] = field(default_factory=list)


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def hf_tokenizer(folder: Path) -> BaseTokenizer:
    from tokenizers import Tokenizer

    from tuillm.core.models.metadata import hf_chat_template

    file = folder / "tokenizer.json"
    if not file.is_file():
        raise ModelFileError(folder, "no tokenizer.json (the preview needs a fast tokenizer)")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust library raises its own exception type
        raise ModelFileError(file, f"cannot read it ({exc})") from None
    try:
        tc = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        tc = {}
    tc = tc if isinstance(tc, dict) else {}
    bos, eos = _token_text(tc.get("bos_token")), _token_text(tc.get("eos_token"))
    source = hf_chat_template(folder)
    template = ChatTemplate(source, bos_token=bos, eos_token=eos, name="model") if source else None
    bos_id = tok.token_to_id(bos) if bos else None
    eos_id = tok.token_to_id(eos) if eos else None
    adds_bos = bos_id is not None and tok.encode("x").ids[:1] == [bos_id]

    def prefix_chars(text: str, n: int) -> int:
        offsets = tok.encode(text, add_special_tokens=False).offsets
        return offsets[n - 1][1] if 0 < n <= len(offsets) else (len(text) if n > 0 else 0)

    ends = TextEnds(bos=[bos_id] if adds_bos and bos_id is not None else [],
                    eos=[eos_id] if eos_id is not None else [], eos_text=eos)
    return BaseTokenizer(template, lambda s: tok.encode(s, add_special_tokens=False).ids, prefix_chars, ends)


def gguf_tokenizer(path: Path) -> BaseTokenizer:
    """The tokenizer training will use: that of the GGUF's dequantized copy when it exists, else llama.cpp's."""
    from tuillm.core.llama.tokenizer import open_vocab
    from tuillm.core.train.base import dequantized_folder

    copy = dequantized_folder(path)
    if (copy / "tokenizer.json").is_file():
        return hf_tokenizer(copy)
    vocab = open_vocab(path)
    bos, eos = vocab.bos, vocab.eos
    template = None
    if vocab.chat_template:
        template = ChatTemplate(vocab.chat_template, bos_token=bos.text if bos else "",
                                eos_token=eos.text if eos else "", name="gguf")

    def prefix_chars(text: str, n: int) -> int:
        return len(vocab.detokenize(vocab.tokenize(text)[:n]))

    ends = TextEnds(bos=[bos.id] if bos is not None and vocab.adds_bos else [],
                    eos=[eos.id] if eos is not None else [], eos_text=eos.text if eos else "")
    return BaseTokenizer(template, vocab.tokenize, prefix_chars, ends)


def base_tokenizer(base: Path) -> BaseTokenizer:
    """The template and tokenizer of a base: an HF folder or a GGUF file."""
    base = Path(base)
    if base.is_dir():
        return hf_tokenizer(base)
    from tuillm.core.train.base import is_gguf

    if not is_gguf(base):
        raise ModelFileError(base, "not a GGUF file or an HF checkpoint folder")
    return gguf_tokenizer(base)


class PrefixTokenizer:
    """``tokenize`` and ``prefix_chars`` of a base bounded to what a preview cut at ``max_len`` shows: each text is
    tokenized as its shortest doubled prefix (from ``FIRST_CHARS_PER_TOKEN`` characters a token) that gives
    ``max_len + PREFIX_MARGIN`` tokens, or whole when shorter. Those kept (at most ``max_len``) are the whole text's.
    ``clipped``: a text was tokenized in part since it was last set False."""

    def __init__(self, tokenizer: BaseTokenizer, max_len: int) -> None:
        self._base = tokenizer
        self.need = max(max_len, 0) + PREFIX_MARGIN
        self.clipped = False

    def _head(self, text: str) -> tuple[str, list[int]]:
        size = FIRST_CHARS_PER_TOKEN * self.need
        while size < len(text):
            ids = self._base.tokenize(text[:size])
            if len(ids) >= self.need:
                return text[:size], ids
            size *= 2
        return text, self._base.tokenize(text)

    def tokenize(self, text: str) -> list[int]:
        head, ids = self._head(text)
        self.clipped |= len(head) < len(text)
        return ids

    def prefix_chars(self, text: str, n: int) -> int:
        return self._base.prefix_chars(self._head(text)[0], n)

    def example(self, line: int, done: Tokenized) -> PreviewExample:
        """``done`` (tokenized with ``self.tokenize`` since ``clipped`` was set False) as the preview shows it."""
        return PreviewExample(line, shown_pieces(done, self.prefix_chars), done.length,
                              done.example.trained_tokens, done.dropped, exact=not self.clipped)


def shown_pieces(done: Tokenized, prefix_chars: Callable[[str, int], int]) -> list[tuple[str, str]]:
    """The pieces as (text, kind), a piece the cut falls in split where its kept tokens end."""
    shown: list[tuple[str, str]] = []
    for piece, kept in zip(done.pieces, done.kept(), strict=True):
        kind = TRAINED if piece.trained else PROMPT
        if kept == len(piece.ids):
            shown.append((piece.text, kind))
        elif kept == 0:
            shown.append((piece.text, CUT))
        else:
            at = prefix_chars(piece.text, kept)
            shown.extend([(piece.text[:at], kind), (piece.text[at:], CUT)])
    return [p for p in shown if p[0]]  # ids with no text (BOS) are counted, not shown


def preview(data: str | Path | Dataset, tokenizer: BaseTokenizer, *, n: int = 3, max_len: int = 512,
            assistant_only: bool = True) -> Preview:
    """The first ``n`` examples of ``data`` (a path, or a dataset already read with ``load_dataset``, which
    raises a DatasetError for every problem of the file, as training does)."""
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    template = tokenizer.template
    out = Preview(dataset.path, dataset.format, len(dataset.records),
                  template.name if template is not None else "none")
    bounded = PrefixTokenizer(tokenizer, max_len)
    for record in dataset.records[:n]:
        bounded.clipped = False
        done = tokenize_record(record.messages, template, bounded.tokenize, max_len,
                               assistant_only=assistant_only, ends=tokenizer.ends)
        out.examples.append(bounded.example(record.line, done))
    return out


def describe(example: PreviewExample, max_len: int) -> str:
    """One line about an example: its tokens, what carries loss, the cut."""
    count = f"{example.tokens}" if example.exact else f"more than {max_len}"
    text = f"line {example.line}: {count} tokens, {example.trained_tokens} trained"
    if example.cut:
        text += f"; cut at {max_len}"
    if example.dropped:
        text += "; skipped (nothing to learn after the cut)"
    return text

