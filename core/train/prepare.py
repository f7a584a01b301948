"""A run's data set-up: the data files read, checked and encoded with the base's tokenizer, then the eval split.

The rules are core.train.data's; here a transformers tokenizer is bound to them. A set ``cancel`` stops the reading
and the encoding between records (``Cancelled``): a stop or a quit while a large dataset is encoded ends at once,
with nothing written.
"""

from __future__ import annotations

import threading
from typing import Any

from tuillm.core.chat.template import ChatTemplate
from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit, Log, ignore
from tuillm.core.train.data import Example, TextEnds, Tokenize, encode_dataset, load_dataset, split_eval
from tuillm.core.train.options import TrainConfig


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
                             text_suffix=ends.eos, text_prefix=ends.bos, cancel=cancel)
        note = ""
        if enc.truncated:
            note += f"; {enc.truncated} longer than {config.max_len} tokens, cut"
        if enc.dropped:
            note += f"; {enc.dropped} dropped (nothing to learn left after the cut)"
        emit(Log(f"{dataset.path.name}: {len(dataset.records)} examples, {dataset.format} format{note}",
                 "warning" if enc.truncated or enc.dropped else "info"))
        examples.extend(enc.examples)
    return split_eval(examples, config.eval_fraction, config.seed)
