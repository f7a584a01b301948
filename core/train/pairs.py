"""Preference pairs for DPO: JSONL files of ``prompt``/``chosen``/``rejected`` rows, read, checked and encoded.

Two shapes, detected per file from its first record (every record must then match), as trl's preference datasets:
- ``pairs``: ``prompt``, ``chosen`` and ``rejected`` strings; each side is the chat ``user: prompt`` /
  ``assistant: answer`` (the prompt/completion format of supervised data);
- ``chat pairs``: ``chosen`` and ``rejected`` as message lists (OpenAI ``role``/``content``); the prompt is either
  given (``prompt``: a message list, or a string for one user turn) or, when absent, the longest run of messages
  both lists start with (trl's ``extract_prompt``); what follows it is the answer and must hold an assistant turn.

Both sides are rendered with the model's chat template as supervised data is (core.train.data's
``render_segments``); only the answer's assistant tokens are marked (their labels), so a side's log-probability is
that of its answer given the prompt. Reading, line-numbered errors and the cut are core.train.data's. No torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tuillm.core.chat.template import ChatTemplate
from tuillm.core.train.data import (
    IGNORE,
    Dataset,
    Example,
    Piece,
    Tokenize,
    Tokenized,
    load_dataset,
    record_named,
    render_segments,
    to_messages,
)
from tuillm.core.train.jsonl import DatasetError, FileDigest, check_cancel, keys_note, lines_note, read_digested
from tuillm.core.train.preview import BaseTokenizer, PrefixTokenizer, Preview

PAIR_FORMATS = ("pairs", "chat pairs")

Messages = tuple[dict[str, str], ...]


@dataclass(frozen=True)
class PairRecord:
    """One preference pair: the shared prompt and the two answers, as messages."""

    prompt: Messages
    chosen: Messages
    rejected: Messages
    line: int


@dataclass(frozen=True)
class PairDataset:
    path: Path
    format: str
    records: tuple[PairRecord, ...]
    digest: FileDigest | None = None  # the bytes the pairs were read from (what a checkpoint records)


@dataclass
class Pair:
    """A pair encoded: each side's ids, its answer's tokens labelled (``IGNORE`` elsewhere)."""

    chosen: Example
    rejected: Example

    @property
    def tokens(self) -> int:
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)


@dataclass
class EncodedPairs:
    pairs: list[Pair]
    truncated: int = 0  # pairs with a side cut to max_len
    dropped: int = 0  # pairs with a side left without an answer token after the cut
    lengths: list[int] = field(default_factory=list)  # the longer side's tokens before any cut


def detect_pair_format(obj: dict) -> str | None:
    if "chosen" not in obj or "rejected" not in obj:
        return None
    return "chat pairs" if isinstance(obj["chosen"], list) else "pairs"


def _side(prompt: Messages, answer: object, key: str) -> Messages:
    """One side as messages (checked as a conversation of the messages format); ValueError with a short reason."""
    if isinstance(answer, str):
        answer = [{"role": "assistant", "content": answer}]
    if answer == []:
        raise ValueError(f"{key!r} holds nothing after the prompt")
    if not isinstance(answer, list):
        raise ValueError(f"field {key!r} missing, or not a string or a non-empty message list")
    try:
        full = to_messages({"messages": [*prompt, *answer]}, "messages")
    except ValueError as exc:
        raise ValueError(f"{key!r}: {exc}") from None
    if not any(m["role"] == "assistant" for m in full[len(prompt):]):
        raise ValueError(f"{key!r} holds no assistant answer after the prompt")
    return full[len(prompt):]


def _prompt(obj: dict) -> Messages:
    prompt = obj.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("empty 'prompt'")
        return ({"role": "user", "content": prompt},)
    if isinstance(prompt, list) and prompt:
        try:  # checked as messages; the "assistant" it must hold is added to get past that rule
            return to_messages({"messages": [*prompt, {"role": "assistant", "content": ""}]}, "messages")[:-1]
        except ValueError as exc:
            raise ValueError(f"'prompt': {exc}") from None
    raise ValueError("field 'prompt' missing, or not a string or a non-empty message list")


def _shared_prefix(chosen: list, rejected: list) -> int:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return n


def to_pair(obj: dict, fmt: str, line: int) -> PairRecord:
    """One JSON object -> a pair; ValueError (a short reason) when it does not fit ``fmt``."""
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    if fmt == "pairs":
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise ValueError("'chosen' and 'rejected' must both be strings")
    elif not isinstance(chosen, list) or not isinstance(rejected, list):
        raise ValueError("'chosen' and 'rejected' must both be message lists")
    if chosen == rejected:
        raise ValueError("'chosen' and 'rejected' are the same answer")
    if "prompt" in obj or fmt == "pairs":
        prompt = _prompt(obj)
    else:  # implicit: the messages both sides start with (trl's extract_prompt)
        n = _shared_prefix(chosen, rejected)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("no 'prompt', and 'chosen' and 'rejected' share no first message")
        prompt = _prompt({"prompt": chosen[:n]})  # type: ignore[index]
        chosen, rejected = chosen[n:], rejected[n:]  # type: ignore[index]
    record = PairRecord(prompt, _side(prompt, chosen, "chosen"), _side(prompt, rejected, "rejected"), line)
    if record.chosen == record.rejected:  # alike once read as messages (a key no template shows): nothing to learn
        raise ValueError("'chosen' and 'rejected' are the same answer")
    return record


def load_pairs(path: str | Path, cancel: threading.Event | None = None) -> PairDataset:
    """Read and check a JSONL file of preference pairs; every problem found is reported in one DatasetError. A set
    ``cancel`` stops it with ``Cancelled``."""
    objects, digest = read_digested(path, cancel)
    path = digest.path
    first_line, first = objects[0]
    fmt = detect_pair_format(first)
    if fmt is None:
        raise DatasetError(f"{path}: line {first_line}: not a preference pair (keys: {keys_note(first)}); --method dpo "
                           "takes prompt/chosen/rejected rows, or chosen/rejected message lists")
    records: list[PairRecord] = []
    problems: list[tuple[int, str]] = []
    for number, obj in objects:
        check_cancel(cancel)
        try:
            if detect_pair_format(obj) != fmt:
                raise ValueError("'chosen' and 'rejected' missing" if detect_pair_format(obj) is None
                                 else f"not in the {fmt} format of line {first_line}")
            records.append(to_pair(obj, fmt, number))
        except ValueError as exc:
            problems.append((number, str(exc)))
    if problems:
        raise DatasetError(f"{path}: {len(problems)} bad preference pair{'s' if len(problems) > 1 else ''} "
                           f"({lines_note([n for n, _ in problems])}; line {problems[0][0]}: {problems[0][1]})")
    return PairDataset(path, fmt, tuple(records), digest)


def tokenize_side(prompt: Messages, answer: Messages, template: ChatTemplate | None, tokenize: Tokenize,
                  max_len: int) -> Tokenized:
    """One side under the training-data rules (``render_segments``, the cut), with only the answer's assistant
    pieces trained: the prompt's own assistant turns (a multi-turn prompt) carry no label."""
    if template is None:
        raise DatasetError("the model has no chat template: preference pairs are rendered as chats with it")
    segments = render_segments([*prompt, *answer], template)
    skip = sum(1 for m in prompt if m["role"] == "assistant")
    pieces = []
    for text, assistant in segments:
        trained = assistant and skip == 0
        if assistant and skip:
            skip -= 1
        pieces.append(Piece(text, tuple(tokenize(text)), trained))
    ids = [t for piece in pieces for t in piece.ids]
    labels = [t if piece.trained else IGNORE for piece in pieces for t in piece.ids]
    return Tokenized(tuple(pieces), Example(ids[:max_len], labels[:max_len]), len(ids))


def encode_pairs(dataset: PairDataset, tokenize: Tokenize, template: ChatTemplate | None,
                 max_len: int, cancel: threading.Event | None = None,
                 progress: Callable[[int, int], None] | None = None) -> EncodedPairs:
    """Every pair, each side cut to ``max_len`` (counted); a pair with a side left without an answer token is
    dropped (counted). DatasetError when no pair is left. A set ``cancel`` stops it before the next pair;
    ``progress(done, total)`` is told after each."""
    if max_len < 2:
        raise DatasetError(f"max length {max_len} is too short (at least 2 tokens)")
    out = EncodedPairs([])
    for number, record in enumerate(dataset.records, 1):
        check_cancel(cancel)
        with record_named(dataset.path, record.line):
            sides = [tokenize_side(record.prompt, answer, template, tokenize, max_len)
                     for answer in (record.chosen, record.rejected)]
        if progress is not None:
            progress(number, len(dataset.records))
        out.lengths.append(max(side.length for side in sides))
        out.truncated += any(side.truncated for side in sides)
        if any(side.dropped for side in sides):
            out.dropped += 1
            continue
        out.pairs.append(Pair(sides[0].example, sides[1].example))
    if not out.pairs:
        raise DatasetError(f"{dataset.path}: no pair keeps an answer within the max length {max_len} tokens "
                           f"(shortest: {min(out.lengths)} tokens); raise --max-len")
    return out


def describe_pairs(dataset: PairDataset, encoded: EncodedPairs, max_len: int) -> str:
    """The data line of a run: how many pairs, their format, what the cut did."""
    note = ""
    if encoded.truncated:
        note += f"; {encoded.truncated} longer than {max_len} tokens, cut"
    if encoded.dropped:
        note += f"; {encoded.dropped} dropped (no answer token left after the cut)"
    return f"{dataset.path.name}: {len(dataset.records)} preference pairs, {dataset.format} format{note}"


def pair_sides(records: Sequence[PairRecord]) -> list[tuple[int, str, Messages, Messages]]:
    """(line, "chosen"|"rejected", prompt, answer) of each side, in order: what the preview shows."""
    return [(r.line, name, r.prompt, answer) for r in records
            for name, answer in (("chosen", r.chosen), ("rejected", r.rejected))]


def preview_pairs(dataset: PairDataset, tokenizer: BaseTokenizer, *, n: int = 2, max_len: int = 512) -> Preview:
    """The first ``n`` pairs as the Train pane's preview shows data: each pair's chosen side, then its rejected
    side, rendered and cut as training does (the answer's tokens marked as trained)."""
    out = Preview(dataset.path, dataset.format, len(dataset.records),
                  tokenizer.template.name if tokenizer.template is not None else "none")
    bounded = PrefixTokenizer(tokenizer, max_len)  # only what is shown is tokenized (a 5 MB answer froze the app)
    for line, _, prompt, answer in pair_sides(dataset.records[:n]):
        bounded.clipped = False
        done = tokenize_side(prompt, answer, tokenizer.template, bounded.tokenize, max_len)
        out.examples.append(bounded.example(line, done))
    return out


def check_data(paths: Sequence[str | Path], method: str,
               cancel: threading.Event | None = None) -> list[Dataset | PairDataset]:
    """Every data file read and checked as ``method`` takes it (preference pairs for "dpo", else supervised data),
    so the front ends report bad data before the base model is even looked at. A set ``cancel`` stops it.

    The datasets read, each with the digest of its file, are returned: handed to the run (``train(...,
    datasets=...)``), its set-up records and encodes them without reading the files again."""
    return [(load_pairs if method == "dpo" else load_dataset)(path, cancel) for path in paths]
