"""The first examples of a training file as the model will see them: rendered with the base's chat template,
split into the pieces that carry loss and those that do not, with token counts and the ``max_len`` cut.

It reuses core.train_data (the same reading, checks and rendering as the training job) and needs no torch: an HF
folder's ``tokenizer.json`` is read with the ``tokenizers`` library and its template with core.metadata; a GGUF's
template comes from its header and its tokenizer from llama.cpp (vocabulary only, no weights). Counts are those of
the engine for an HF base; for a GGUF base (trained through its dequantized HF copy) they may differ by a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuillm.core.chat.template import ChatTemplate
from tuillm.core.errors import ModelFileError
from tuillm.core.train.data import Dataset, load_dataset, render_segments

PROMPT, TRAINED, CUT = "prompt", "trained", "cut"  # a piece: no loss / carries loss / beyond max_len (dropped)


@dataclass
class BaseTokenizer:
    """What the preview needs from a base model: its template and a tokenizer (ids and, for the cut, the
    character length of a token prefix)."""

    template: ChatTemplate | None
    tokenize: Callable[[str], list[int]]
    prefix_chars: Callable[[str, int], int]  # (text, n_tokens) -> characters of text those tokens cover
    eos_text: str = ""
    adds_bos: bool = False


@dataclass
class PreviewExample:
    line: int
    pieces: list[tuple[str, str]]  # (text, PROMPT | TRAINED | CUT), in order
    tokens: int
    trained_tokens: int  # after the cut
    dropped: bool = False  # nothing to learn left after the cut: training skips it

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
    except (OSError, ValueError):
        tc = {}
    bos, eos = _token_text(tc.get("bos_token")), _token_text(tc.get("eos_token"))
    source = hf_chat_template(folder)
    template = ChatTemplate(source, bos_token=bos, eos_token=eos, name="model") if source else None
    bos_id = tok.token_to_id(bos) if bos else None
    adds_bos = bos_id is not None and tok.encode("x").ids[:1] == [bos_id]

    def prefix_chars(text: str, n: int) -> int:
        offsets = tok.encode(text, add_special_tokens=False).offsets
        return offsets[n - 1][1] if 0 < n <= len(offsets) else (len(text) if n > 0 else 0)

    return BaseTokenizer(template, lambda s: tok.encode(s, add_special_tokens=False).ids, prefix_chars, eos,
                         adds_bos)


def gguf_tokenizer(path: Path) -> BaseTokenizer:
    """The tokenizer training will use: that of the GGUF's dequantized copy when it exists, else llama.cpp's."""
    from tuillm.core.llama.loader import new_llama
    from tuillm.core.train.base import dequantized_folder

    copy = dequantized_folder(path)
    if (copy / "tokenizer.json").is_file():
        return hf_tokenizer(copy)
    try:
        # verbose=False would point fds 1 and 2 at /dev/null during the load, blanking a TUI drawn on them;
        # llama.cpp's own log goes to the loader's capture, the Python-level lines to sys.stderr.
        llm = new_llama(str(path), vocab_only=True, verbose=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(path, f"llama.cpp cannot read its vocabulary ({exc})") from None
    llm.verbose = False
    model = llm._model
    bos_id, eos_id = model.token_bos(), model.token_eos()
    bos = model.token_get_text(bos_id) if bos_id >= 0 else ""
    eos = model.token_get_text(eos_id) if eos_id >= 0 else ""
    source = llm.metadata.get("tokenizer.chat_template")  # read by llama.cpp already (gguf's reader is slow)
    template = ChatTemplate(source, bos_token=bos, eos_token=eos, name="gguf") if source else None

    def tokenize(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def prefix_chars(text: str, n: int) -> int:
        ids = tokenize(text)[:n]
        return len(llm.detokenize(ids, special=True).decode("utf-8", errors="ignore"))

    return BaseTokenizer(template, tokenize, prefix_chars, eos, bool(model.add_bos_token()))


def base_tokenizer(base: Path) -> BaseTokenizer:
    """The template and tokenizer of a base: an HF folder or a GGUF file."""
    base = Path(base)
    if base.is_dir():
        return hf_tokenizer(base)
    from tuillm.core.train.base import is_gguf

    if not is_gguf(base):
        raise ModelFileError(base, "not a GGUF file or an HF checkpoint folder")
    return gguf_tokenizer(base)


def preview(data: str | Path | Dataset, tokenizer: BaseTokenizer, *, n: int = 3, max_len: int = 512,
            assistant_only: bool = True) -> Preview:
    """The first ``n`` examples of ``data`` (a path, or a dataset already read with ``load_dataset``, which
    raises a DatasetError for every problem of the file, as training does)."""
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    template = tokenizer.template
    out = Preview(dataset.path, dataset.format, len(dataset.records),
                  template.name if template is not None else "none")
    for record in dataset.records[:n]:
        segments = render_segments(record.messages, template)
        if record.messages[0]["role"] == "text" and tokenizer.eos_text:
            segments = [*segments, (tokenizer.eos_text, True)]  # the engine appends EOS to raw text
        used = 1 if record.messages[0]["role"] == "text" and tokenizer.adds_bos else 0
        pieces: list[tuple[str, str]] = []
        trained = 0
        for text, is_trained in segments:
            kind = TRAINED if is_trained or not assistant_only else PROMPT
            ids = tokenizer.tokenize(text)
            room = max_len - used
            used += len(ids)
            if room >= len(ids):
                pieces.append((text, kind))
                trained += len(ids) if kind == TRAINED else 0
            elif room <= 0:
                pieces.append((text, CUT))
            else:
                at = tokenizer.prefix_chars(text, room)
                pieces.extend([(text[:at], kind), (text[at:], CUT)])
                trained += room if kind == TRAINED else 0
        # The first token is never predicted: an example needs a trained token after it (as in encode_dataset).
        first_trained = pieces[0][1] == TRAINED if pieces else False
        dropped = trained - (1 if first_trained else 0) <= 0
        out.examples.append(PreviewExample(record.line, [p for p in pieces if p[0]], used, trained, dropped))
    return out


def describe(example: PreviewExample, max_len: int) -> str:
    """One line about an example: its tokens, what carries loss, the cut."""
    text = f"line {example.line}: {example.tokens} tokens, {example.trained_tokens} trained"
    if example.cut:
        text += f"; cut at {max_len}"
    if example.dropped:
        text += "; skipped (nothing to learn after the cut)"
    return text

