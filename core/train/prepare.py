"""A run's data set-up: the data files read, checked and encoded with the base's tokenizer, then the eval split.

The rules are core.train.data's (supervised examples) and core.train.pairs' (preference pairs, ``--method dpo``);
here a transformers tokenizer is bound to them. Each file is read once (``read_data``): the same read checks its
records and takes the digest of its bytes that the run's checkpoints record (core.train.resume), and the records are
kept for the encoding; a front end that checked the data already (core.train.pairs.check_data) hands its datasets
over instead. A set ``cancel`` stops the reading
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
from tuillm.core.paths import expand_user
from tuillm.core.train.data import Dataset, Example, TextEnds, Tokenize, encode_dataset, split_eval
from tuillm.core.train.options import TrainConfig
from tuillm.core.train.pairs import Pair, PairDataset, check_data, describe_pairs, encode_pairs

Read = Dataset | PairDataset  # a data file read and checked, with the digest of its bytes

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


def take(datasets: list[Read] | None) -> list[Read]:
    """The datasets a front end hands to a run, taken over: its list is emptied, so each file's records are freed
    once they are encoded (not held by the front end through the training)."""
    taken = list(datasets or ())
    if datasets:
        datasets.clear()
    return taken


def read_data(config: TrainConfig, cancel: threading.Event | None = None,
              handed: list[Read] | None = None) -> list[Read]:
    """The run's data files read and checked as its method takes them, each with the digest of its bytes, in one
    read of each: ``handed`` (what ``check_data`` read for the front end; taken over, the list is emptied) when it
    holds the files of ``config.data``, in order and read for this method, else read here."""
    dpo, given = config.method == "dpo", take(handed)
    if len(given) == len(config.data) and all(
            d.digest is not None and d.path == expand_user(name) and isinstance(d, PairDataset) == dpo
            for d, name in zip(given, config.data, strict=True)):
        return given
    del given  # not this run's data (a front end's mistake): freed, and read afresh
    return check_data(config.data, config.method, cancel)


def _encoded(dataset: Read, config: TrainConfig, coding: tuple[ChatTemplate | None, Tokenize], ends: TextEnds,
             emit: Emit, cancel: threading.Event | None) -> list[Example] | list[Pair]:
    """One file's examples (or pairs), encoded under the data rules; its summary line told."""
    template, tokenize = coding
    if isinstance(dataset, PairDataset):
        pairs = encode_pairs(dataset, tokenize, template, config.max_len, cancel,
                             EncodeProgress(emit, dataset.path.name, "pairs"))
        emit(Log(describe_pairs(dataset, pairs, config.max_len),
                 "warning" if pairs.truncated or pairs.dropped else "info"))
        return pairs.pairs
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
    return enc.examples


def prepare_data(config: TrainConfig, tokenizer: Any, emit: Emit = ignore, cancel: threading.Event | None = None,
                 datasets: list[Read] | None = None) -> tuple[list, list]:
    """All data files read, checked and encoded (errors before any training): examples, or pairs under
    ``--method dpo``; then the eval split. ``datasets``: the files as ``read_data`` read them (else read here),
    taken over: the list is emptied as each is encoded, so its records are freed."""
    if not config.data:
        raise TuillmError("no training data given")
    if datasets is None:
        datasets = read_data(config, cancel)
    coding = encoding(tokenizer)
    ends = text_ends(tokenizer) if any(isinstance(d, Dataset) for d in datasets) else TextEnds()  # (raw text's)
    examples: list = []
    while datasets:
        examples.extend(_encoded(datasets.pop(0), config, coding, ends, emit, cancel))
    return split_eval(examples, config.eval_fraction, config.seed)
