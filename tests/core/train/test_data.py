"""Training data without a model: format detection, the errors for bad files, rendering with a chat template
and the assistant-only labels, truncation, packing. A character tokenizer stands in for the model's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.train.jsonl_rows import CHATML, chars, write
from tuillm.core.train.data import (
    IGNORE,
    DatasetError,
    TextEnds,
    encode_dataset,
    epoch_order,
    load_dataset,
    micro_batches,
    pack,
    render_segments,
    split_eval,
    tokenize_record,
)


@pytest.mark.parametrize(("row", "fmt"), [
    ({"instruction": "Add", "input": "2 and 3", "output": "5"}, "alpaca"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}, "sharegpt"),
    ({"prompt": "hi", "completion": "yo"}, "completion"),
    ({"text": "Once upon a time"}, "text"),
])
def test_formats_are_detected(tmp_path: Path, row: dict, fmt: str) -> None:
    ds = load_dataset(write(tmp_path / "d.jsonl", [row, row]))
    assert ds.format == fmt and len(ds.records) == 2
    roles = [m["role"] for m in ds.records[0].messages]
    assert roles == (["text"] if fmt == "text" else ["user", "assistant"])


def test_alpaca_input_joins_the_instruction(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path / "d.jsonl", [{"instruction": "Add", "input": "2 and 3", "output": "5"},
                                                   {"instruction": "Say hi", "output": "hi"}]))
    assert ds.records[0].messages[0]["content"] == "Add\n\n2 and 3"
    assert ds.records[1].messages[0]["content"] == "Say hi"


def test_invalid_json_lines_are_listed_with_a_count(tmp_path: Path) -> None:
    rows: list = [{"text": "ok"}] * 3 + ["{broken"] + [{"text": "ok"}] + ["nope"] * 7
    with pytest.raises(DatasetError) as err:
        load_dataset(write(tmp_path / "d.jsonl", rows))
    msg = str(err.value)
    assert "8 invalid JSON lines" in msg and "lines 4, 6, 7, 8, 9 and 3 more" in msg
    assert "\n" not in msg


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="empty file"):
        load_dataset(write(tmp_path / "e.jsonl", ["", "  "]))
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing.jsonl")


def test_missing_fields_name_the_lines(tmp_path: Path) -> None:
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "a"}, {"instruction": "a", "output": 3}]
    with pytest.raises(DatasetError) as err:
        load_dataset(write(tmp_path / "d.jsonl", rows))
    msg = str(err.value)
    assert "2 examples not in the alpaca format" in msg and "lines 2, 3" in msg and "'output'" in msg


def test_unknown_format_and_conversation_without_answer(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown format"):
        load_dataset(write(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}]))
    with pytest.raises(DatasetError, match="no assistant message"):
        load_dataset(write(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}]))
    with pytest.raises(DatasetError, match="expected human/gpt/system"):
        load_dataset(write(tmp_path / "s.jsonl", [{"conversations": [{"from": "bot", "value": "x"}]}]))


def test_segments_mark_only_assistant_turns() -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"}]
    segments = render_segments(msgs, CHATML)
    assert "".join(t for t, _ in segments) == CHATML.render(msgs, add_generation_prompt=False)
    trained = [t for t, keep in segments if keep]
    assert trained == ["A1<|im_end|>\n", "A2<|im_end|>\n"]
    assert all("<|im_start|>assistant\n" not in t for t in trained)


def test_labels_follow_the_mask_and_can_cover_everything(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path / "d.jsonl", [{"prompt": "Q", "completion": "Answer"}]))
    enc = encode_dataset(ds, chars, CHATML, 1000)
    ex = enc.examples[0]
    text = "".join(chr(i) for i in ex.input_ids)
    assert text == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nAnswer<|im_end|>\n"
    learned = "".join(chr(t) for t in ex.labels if t != IGNORE)
    assert learned == "Answer<|im_end|>\n"
    everything = encode_dataset(ds, chars, CHATML, 1000, assistant_only=False).examples[0]
    assert everything.labels == everything.input_ids


def test_text_examples_get_the_suffix_and_full_loss(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path / "d.jsonl", [{"text": "abc"}]))
    ex = encode_dataset(ds, chars, None, 100, text_suffix=[0]).examples[0]
    assert ex.input_ids == [97, 98, 99, 0] and ex.labels == ex.input_ids


def test_truncation_is_counted_and_all_too_long_is_an_error(tmp_path: Path) -> None:
    rows = [{"prompt": "Q", "completion": "A" * 10}, {"prompt": "Q" * 200, "completion": "B"}]
    ds = load_dataset(write(tmp_path / "d.jsonl", rows))
    enc = encode_dataset(ds, chars, CHATML, 60)
    # The first is cut inside its answer (kept), the second inside its prompt (nothing to learn: dropped).
    assert enc.truncated == 2 and enc.dropped == 1 and len(enc.examples) == 1
    assert len(enc.examples[0].input_ids) == 60
    with pytest.raises(DatasetError, match="every example is longer than the max length 30"):
        encode_dataset(ds, chars, CHATML, 30)


def test_chat_format_needs_a_template(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path / "d.jsonl", [{"prompt": "Q", "completion": "A"}]))
    with pytest.raises(DatasetError, match="no chat template"):
        encode_dataset(ds, chars, None, 100)


def test_packing_has_no_padding_and_resets_positions(tmp_path: Path) -> None:
    rows = [{"text": "ab"}, {"text": "cdef"}, {"text": "ghi"}]
    enc = encode_dataset(load_dataset(write(tmp_path / "d.jsonl", rows)), chars, None, 100)
    packed = pack(enc.examples)
    assert packed.input_ids == chars("abcdefghi")
    assert packed.position_ids == [0, 1, 0, 1, 2, 3, 0, 1, 2]
    # The first token of each example is not predicted from the one before it.
    assert packed.labels == [IGNORE, 98, IGNORE, 100, 101, 102, IGNORE, 104, 105]
    assert packed.trained_tokens == 6


def test_epoch_order_and_batches_are_deterministic(tmp_path: Path) -> None:
    rows = [{"text": f"example {i}"} for i in range(10)]
    enc = encode_dataset(load_dataset(write(tmp_path / "d.jsonl", rows)), chars, None, 100)
    assert epoch_order(10, 1, 0) == epoch_order(10, 1, 0) != epoch_order(10, 1, 1)
    batches = list(micro_batches(enc.examples, 4, seed=1, epoch=0))
    assert [b.n_examples for b in batches] == [4, 4, 2]
    assert sum(len(b.input_ids) for b in batches) == sum(len(e.input_ids) for e in enc.examples)


def test_eval_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = [{"text": f"example {i}"} for i in range(20)]
    enc = encode_dataset(load_dataset(write(tmp_path / "d.jsonl", rows)), chars, None, 100)
    train, held = split_eval(enc.examples, 0.1, seed=3)
    assert len(held) == 2 and len(train) == 18
    assert {id(e) for e in train}.isdisjoint({id(e) for e in held})
    assert [e.input_ids for e in split_eval(enc.examples, 0.1, seed=3)[1]] == [e.input_ids for e in held]
    assert split_eval(enc.examples, 0.0, seed=3) == (enc.examples, [])


def test_text_prefix_is_not_trained(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path / "d.jsonl", [{"text": "ab"}]))
    ex = encode_dataset(ds, chars, None, 100, text_prefix=[1], text_suffix=[0]).examples[0]
    assert ex.input_ids == [1, 97, 98, 0] and ex.labels == [IGNORE, 97, 98, 0]


def test_one_function_holds_the_rules() -> None:
    """tokenize_record (used by training and the preview): BOS untrained, EOS trained, the cut, the drop."""
    text = ({"role": "text", "content": "abc"},)
    done = tokenize_record(text, None, chars, 4, ends=TextEnds(bos=[1], eos=[0], eos_text="</s>"))
    assert [(p.text, p.ids, p.trained) for p in done.pieces] == [("", (1,), False), ("abc", (97, 98, 99), True),
                                                                  ("</s>", (0,), True)]
    assert done.length == 5 and done.truncated and done.kept() == [1, 3, 0]
    assert done.example.input_ids == [1, 97, 98, 99] and done.example.labels == [IGNORE, 97, 98, 99]
    chat = ({"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"})
    cut_in_prompt = tokenize_record(chat, CHATML, chars, 10)
    assert cut_in_prompt.dropped and cut_in_prompt.example.trained_tokens == 0
    whole = tokenize_record(chat, CHATML, chars, 1000, assistant_only=False)
    assert not whole.dropped and all(p.trained for p in whole.pieces)


def test_a_long_encoding_tells_its_progress_and_a_short_one_does_not(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The Train pane and the CLI said only "starting" while a large dataset was encoded. Each record "takes"
    0.1 s on the progress's clock."""
    from tuillm.core.events import Progress
    from tuillm.core.train import prepare

    now = [0.0]
    monkeypatch.setattr(prepare.time, "monotonic", lambda: now[0])
    ds = load_dataset(write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "completion": "a"} for i in range(20)]))
    events: list[Progress] = []
    told = prepare.EncodeProgress(events.append, "d.jsonl")
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        now[0] += 0.1
        seen.append((done, total))
        told(done, total)

    encode_dataset(ds, chars, CHATML, 1000, progress=progress)
    assert seen == [(n, 20) for n in range(1, 21)]  # after each record
    # Quiet for QUIET_S (0.5 s: the first 4 records), then at most every EVERY_S (0.25 s), and the end.
    assert [(e.stage, e.done, e.total) for e in events] == [("data", n, 20) for n in (5, 8, 11, 14, 17, 20)]
    assert events[-1].message == "d.jsonl: 20 of 20 examples encoded"

    now[0] = 100.0
    quick: list[Progress] = []
    encode_dataset(ds, chars, CHATML, 1000, progress=prepare.EncodeProgress(quick.append, "d.jsonl"))
    assert quick == []  # a quick encoding says nothing beyond its summary line
