"""Training data for LoRA: JSONL files read, their format detected, checked, rendered and packed.

Formats (detected per file from its first record; every record must then match):
- ``alpaca``: ``instruction``, optional ``input``, ``output`` (and optional ``system``)
- ``messages``: OpenAI-style ``{"messages": [{"role", "content"}, ...]}``
- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}``
- ``completion``: ``prompt`` + ``completion``
- ``text``: raw ``text`` (the loss covers every token)

Conversations are rendered with the model's chat template (the sandboxed one of core.chat.template) piece by
piece, so each token is known to come from the assistant or not; by default only the assistant's tokens carry
loss. Nothing here imports torch: a tokenizer is any ``str -> list[int]`` callable, so all of it is unit-tested
without a model.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tuillm.core.chat.template import ChatTemplate, ChatTemplateError, TemplateStopped
from tuillm.core.train.jsonl import (
    DatasetError,
    FileDigest,
    check_cancel,
    keys_note,
    lines_note,
    read_digested,
    value_note,
)

FORMATS = ("alpaca", "messages", "sharegpt", "completion", "text")
IGNORE = -100  # the label of a token that carries no loss (the convention of transformers' loss functions)

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "model": "assistant", "system": "system"}

Tokenize = Callable[[str], list[int]]


@dataclass(frozen=True)
class Record:
    """One example as a conversation (``text`` format: one pseudo-message with role ``text``)."""

    messages: tuple[dict[str, str], ...]
    line: int


@dataclass(frozen=True)
class Dataset:
    path: Path
    format: str
    records: tuple[Record, ...]
    digest: FileDigest | None = None  # the bytes the records were read from (what a checkpoint records)


@dataclass
class Example:
    """Token ids and their labels (``IGNORE`` where no loss)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class Encoded:
    examples: list[Example]
    truncated: int = 0  # examples cut to max_len
    dropped: int = 0  # examples with no trained token left after the cut
    lengths: list[int] = field(default_factory=list)  # token counts before any cut


def detect_format(obj: dict) -> str | None:
    if "messages" in obj:
        return "messages"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if "prompt" in obj and "completion" in obj:
        return "completion"
    if "text" in obj:
        return "text"
    return None


def _string(obj: dict, key: str, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} missing or not a string")
    return value


def to_messages(obj: dict, fmt: str) -> tuple[dict[str, str], ...]:
    """One JSON object -> messages; ValueError (a short reason) when it does not fit ``fmt``."""
    if fmt == "alpaca":
        instruction, output = _string(obj, "instruction"), _string(obj, "output")
        extra = _string(obj, "input", optional=True)
        system = _string(obj, "system", optional=True)
        user = f"{instruction}\n\n{extra}" if extra else instruction
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}, {"role": "assistant", "content": output}]
        return tuple(msgs)
    if fmt == "completion":
        return ({"role": "user", "content": _string(obj, "prompt")},
                {"role": "assistant", "content": _string(obj, "completion")})
    if fmt == "text":
        text = _string(obj, "text")
        if not text.strip():
            raise ValueError("empty 'text'")
        return ({"role": "text", "content": text},)
    key = "messages" if fmt == "messages" else "conversations"
    items = obj.get(key)
    if not isinstance(items, list) or not items:
        raise ValueError(f"field {key!r} missing or not a non-empty list")
    msgs = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"an entry of {key!r} is not an object")
        if fmt == "messages":
            role, content = item.get("role"), item.get("content")
            if role not in ("system", "user", "assistant", "tool"):
                raise ValueError(f"message role {value_note(role)} (expected system/user/assistant/tool)")
        else:
            role, content = _SHAREGPT_ROLES.get(str(item.get("from"))), item.get("value")
            if role is None:
                raise ValueError(f"conversation 'from' {value_note(item.get('from'))} (expected human/gpt/system)")
        if not isinstance(content, str):
            raise ValueError("a message without string content")
        msgs.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("no assistant message")
    return tuple(msgs)


def load_dataset(path: str | Path, cancel: threading.Event | None = None) -> Dataset:
    """Read and check a JSONL file; every problem found is reported in one DatasetError. A set ``cancel`` stops it
    with ``Cancelled``."""
    objects, digest = read_digested(path, cancel)
    path = digest.path
    fmt = detect_format(objects[0][1])
    if fmt is None:
        first = objects[0][1]
        # A new user's pair file under the default method was told only the supervised formats.
        expected = ("these are preference pairs: choose the dpo method (--method dpo)" if "chosen" in first
                    and "rejected" in first else
                    "expected instruction/output, messages, conversations, prompt/completion or text")
        raise DatasetError(f"{path}: line {objects[0][0]}: unknown format (keys: {keys_note(first)}); {expected}")
    records: list[Record] = []
    problems: list[tuple[int, str]] = []
    for number, obj in objects:
        check_cancel(cancel)
        try:
            records.append(Record(to_messages(obj, fmt), number))
        except ValueError as exc:
            problems.append((number, str(exc)))
    if problems:
        first_reason = problems[0][1]
        raise DatasetError(f"{path}: {len(problems)} example{'s' if len(problems) > 1 else ''} not in the "
                           f"{fmt} format of line {objects[0][0]} ({lines_note([n for n, _ in problems])}; "
                           f"line {problems[0][0]}: {first_reason})")
    return Dataset(path, fmt, tuple(records), digest)


def render_segments(messages: Sequence[dict[str, str]], template: ChatTemplate | None) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_assistant) pieces, in order; joined they equal the full render.

    Each assistant turn is found as the difference between the prompt up to it (with the generation prompt) and
    the render that includes it. A template that rewrites earlier turns (some drop past reasoning) breaks that
    prefix property: then the whole render is one trained piece.
    """
    if len(messages) == 1 and messages[0]["role"] == "text":
        return [(messages[0]["content"], True)]
    if template is None:
        raise DatasetError("the model has no chat template; use the text format ({\"text\": ...})")
    full = template.render(messages, add_generation_prompt=False)
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt = template.render(messages[:i], add_generation_prompt=True) if i else None
        upto = template.render(messages[: i + 1], add_generation_prompt=False)
        if prompt is None or not prompt.startswith(done) or not upto.startswith(prompt) \
                or not full.startswith(upto):
            return [(full, True)]
        if len(prompt) > len(done):
            pieces.append((prompt[len(done):], False))
        pieces.append((upto[len(prompt):], True))
        done = upto
    if len(full) > len(done):
        pieces.append((full[len(done):], False))
    return pieces


@dataclass(frozen=True)
class TextEnds:
    """The ids raw text (the ``text`` format) gets around it; chat templates write their own.

    ``bos``: the BOS id where the tokenizer itself would add one (Llama 3, Gemma; not SmolLM or Qwen), never
    trained. ``eos``: the EOS id, trained, so the model learns where a document stops; ``eos_text`` is how it
    reads (for the preview).
    """

    bos: Sequence[int] = ()
    eos: Sequence[int] = ()
    eos_text: str = ""


@dataclass(frozen=True)
class Piece:
    """A rendered piece of an example and its tokens; ``trained``: its tokens carry loss. Ids added around raw
    text (BOS) have no text of their own."""

    text: str
    ids: tuple[int, ...]
    trained: bool


@dataclass(frozen=True)
class Tokenized:
    """One record under the training-data rules: its pieces, and the example they make after the cut."""

    pieces: tuple[Piece, ...]
    example: Example  # ids and labels, cut to max_len
    length: int  # tokens before the cut

    @property
    def truncated(self) -> bool:
        return self.length > len(self.example.input_ids)

    @property
    def dropped(self) -> bool:
        # The first token is never predicted (nothing precedes it): an example needs a second trained token.
        return not any(t != IGNORE for t in self.example.labels[1:])

    def kept(self) -> list[int]:
        """How many tokens of each piece are before the cut."""
        room, out = len(self.example.input_ids), []
        for piece in self.pieces:
            n = max(0, min(len(piece.ids), room))
            out.append(n)
            room -= n
        return out


def tokenize_record(messages: Sequence[dict[str, str]], template: ChatTemplate | None, tokenize: Tokenize,
                    max_len: int, *, assistant_only: bool = True, ends: TextEnds = TextEnds()) -> Tokenized:
    """The training-data rules in one place (training and the preview both call this): the conversation rendered
    piece by piece; only the assistant's pieces carry loss unless not ``assistant_only``; raw text between
    ``ends``; then cut to ``max_len`` tokens."""
    segments = render_segments(messages, template)
    is_text = messages[0]["role"] == "text"
    pieces = [Piece(text, tuple(tokenize(text)), trained or not assistant_only) for text, trained in segments]
    if is_text:
        pieces = [*([Piece("", tuple(ends.bos), False)] if ends.bos else []), *pieces,
                  *([Piece(ends.eos_text, tuple(ends.eos), True)] if ends.eos else [])]
    ids = [t for piece in pieces for t in piece.ids]
    labels = [t if piece.trained else IGNORE for piece in pieces for t in piece.ids]
    return Tokenized(tuple(pieces), Example(ids[:max_len], labels[:max_len]), len(ids))


@contextmanager
def record_named(path: Path, line: int) -> Iterator[None]:
    """A record's failure to render (the chat template refused it, or there is none) as a DatasetError naming the
    file and the line: a template that raises for one conversation in thousands names that one."""
    try:
        yield
    except TemplateStopped:  # Ctrl-C while rendering: not the record's fault
        raise
    except (ChatTemplateError, DatasetError) as exc:
        raise DatasetError(f"{path}: line {line}: {exc}") from None


def encode_dataset(dataset: Dataset, tokenize: Tokenize, template: ChatTemplate | None, max_len: int, *,
                   assistant_only: bool = True, text_suffix: Sequence[int] = (),
                   text_prefix: Sequence[int] = (), cancel: threading.Event | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Encoded:
    """Every record under ``tokenize_record``'s rules; over-long ones cut to ``max_len`` and counted, those with
    nothing left to learn dropped and counted. A set ``cancel`` stops it before the next record (``Cancelled``):
    a large dataset takes seconds, and a stop or a quit waited for all of it. ``progress(done, total)`` is told
    after each record.

    ``text_suffix`` (the EOS id) ends raw-text examples, ``text_prefix`` (the BOS id, for tokenizers that add
    one) starts them (see ``TextEnds``). Raises DatasetError when no example is left with a token to learn from.
    """
    if max_len < 2:
        raise DatasetError(f"max length {max_len} is too short (at least 2 tokens)")
    ends = TextEnds(bos=text_prefix, eos=text_suffix)
    out = Encoded([])
    for number, record in enumerate(dataset.records, 1):
        check_cancel(cancel)
        with record_named(dataset.path, record.line):
            done = tokenize_record(record.messages, template, tokenize, max_len, assistant_only=assistant_only,
                                   ends=ends)
        if progress is not None:
            progress(number, len(dataset.records))
        out.lengths.append(done.length)
        if done.truncated:
            out.truncated += 1
        if done.dropped:
            out.dropped += 1
            continue
        out.examples.append(done.example)
    if not out.examples:
        shortest = min(out.lengths)
        if out.truncated == len(dataset.records):
            raise DatasetError(f"{dataset.path}: every example is longer than the max length {max_len} tokens "
                               f"and nothing to learn is left after the cut (shortest: {shortest} tokens); "
                               "raise --max-len")
        raise DatasetError(f"{dataset.path}: no example has a token to learn from (empty answers?)")
    return out


def split_eval(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded random ``fraction`` of the examples held out for eval loss (at least one when asked and there
    are at least two examples)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


@dataclass
class PackedBatch:
    """Examples concatenated in one row: ``position_ids`` restart at 0 for each, so attention stays within an
    example (transformers builds a block-diagonal mask from them) and no token is padding."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    n_examples: int

    @property
    def bounds(self) -> list[int]:
        """Where each example starts (its position 0), then the row's end: the one reading of the packing that
        attention, splitting into rows and per-example sums share."""
        return [i for i, p in enumerate(self.position_ids) if p == 0 or i == 0] + [len(self.position_ids)]

    @property
    def trained_tokens(self) -> int:
        # The first label of each example is masked when packing, so this counts predictions made.
        return sum(1 for t in self.labels if t != IGNORE)


def pack(examples: Sequence[Example]) -> PackedBatch:
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for ex in examples:
        ids.extend(ex.input_ids)
        # Label 0 of an example would be predicted from the previous example's last token: mask it.
        labels.append(IGNORE)
        labels.extend(ex.labels[1:])
        positions.extend(range(len(ex.input_ids)))
    return PackedBatch(ids, labels, positions, len(examples))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch: a function of (seed, epoch) only, so a resumed run replays it."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def micro_batches(examples: Sequence[Example], batch_size: int, seed: int, epoch: int) -> Iterator[PackedBatch]:
    """The packed micro-batches of one epoch (``batch_size`` examples each; the last may hold fewer)."""
    order = epoch_order(len(examples), seed, epoch)
    for start in range(0, len(order), batch_size):
        yield pack([examples[i] for i in order[start: start + batch_size]])
