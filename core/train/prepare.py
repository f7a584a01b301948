"""A run's data set-up: the data files read, checked and encoded with the base's tokenizer, then the eval split.

The rules are core.train.data's; here a transformers tokenizer is bound to them. A set ``cancel`` stops the reading
and the encoding between records (``Cancelled``): a stop or a quit while a large dataset is encoded ends at once,
with nothing written. Encoding a large dataset takes a while (a second per few thousand examples on these
machines): once it has taken ``QUIET_S``, its progress is told (``EncodeProgress``), so the Train pane and the CLI
show more than "starting" meanwhile; a small dataset's encoding says nothing more than its summary line.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tuillm.core.chat.template import ChatTemplate
from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit, Log, Progress, ignore
from tuillm.core.train.data import Example, TextEnds, Tokenize, encode_dataset, load_dataset, split_eval
from tuillm.core.train.options import TrainConfig

QUIET_S = 0.5  # an encoding shorter than this tells no progress
EVERY_S = 0.25  # then at most this often (each event is a redraw in the pane)


class EncodeProgress:
    """``progress(done, total)`` for an encoding of ``name``'s records: ``Progress("data", ...)`` events once it has
    taken ``QUIET_S``, at most every ``EVERY_S``, and its end."""

    def __init__(self, emit: Emit, name: str, unit: str = "examples") -> None:
        self._emit, self._name, self._unit = emit, name, unit
        self._start = self._told = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._start < QUIET_S or (done < total and now - self._told < EVERY_S):
            return
        self._told = now
        self._emit(Progress("data", done, total, f"{self._name}: {done:,} of {total:,} {self._unit} encoded"))


def text_ends(tokenizer: Any) -> TextEnds:
    """BOS/EOS around raw text for a transformers tokenizer (the rule: core.train.data.TextEnds)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [bos]
    return TextEnds(bos=[bos] if adds_bos else [], eos=[eos] if eos is not None else [],
                    eos_text=tokenizer.eos_token or "")


def encoding(tokenizer: Any) -> tuple[ChatTemplate | None, Tokenize]:
    """A transformers tokenizer as the data rules take it: its chat template (or None) and a tokenize callable."""
    source = getattr(tokenizer, "chat_template", None)  # a transformers tokenizer may have none at all
    template = None
    if isinstance(source, str) and source:
        template = ChatTemplate(source, bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "",
                                name="model")

    def tokenize(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    return template, tokenize


def prepare_data(config: TrainConfig, tokenizer: Any, emit: Emit = ignore,
                 cancel: threading.Event | None = None) -> tuple[list[Example], list[Example]]:
    """All data files read, checked and encoded (errors before any training); then the eval split."""
    if not config.data:
        raise TuillmError("no training data given")
    template, tokenize = encoding(tokenizer)
    ends = text_ends(tokenizer)
    examples: list[Example] = []
    for path in config.data:
        dataset = load_dataset(path, cancel)
        enc = encode_dataset(dataset, tokenize, template, config.max_len, assistant_only=config.assistant_only,
                             text_suffix=ends.eos, text_prefix=ends.bos, cancel=cancel,
                             progress=EncodeProgress(emit, dataset.path.name))
        note = ""
        if enc.truncated:
            note += f"; {enc.truncated} longer than {config.max_len} tokens, cut"
        if enc.dropped:
            note += f"; {enc.dropped} dropped (nothing to learn left after the cut)"
        emit(Log(f"{dataset.path.name}: {len(dataset.records)} examples, {dataset.format} format{note}",
                 "warning" if enc.truncated or enc.dropped else "info"))
        examples.extend(enc.examples)
    return split_eval(examples, config.eval_fraction, config.seed)
