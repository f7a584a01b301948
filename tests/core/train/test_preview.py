"""The training preview: the same token counts and trained tokens as the training job's own encoding, the trained
part marked, the max-length cut shown where it falls, and dataset errors as in training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint
from tests.core.train_facts import write_fact_dataset
from tuillm.core.train.data import DatasetError, load_dataset, tokenize_record
from tuillm.core.train.preview import (
    CUT,
    FIRST_CHARS_PER_TOKEN,
    PREFIX_MARGIN,
    PROMPT,
    TRAINED,
    BaseTokenizer,
    base_tokenizer,
    describe,
    preview,
    shown_pieces,
)


@pytest.fixture(scope="module")
def hf_tok():
    return base_tokenizer(demo_hf_checkpoint())


def test_counts_match_the_training_encoding(hf_tok, tmp_path: Path) -> None:
    """The engine's own prepare_data (transformers tokenizer) against the preview (tokenizers, no torch)."""
    from tuillm.core.train.base import load_tokenizer
    from tuillm.core.train.loop import TrainConfig, prepare_data

    data = write_fact_dataset(tmp_path / "fact.jsonl", 4)
    with (tmp_path / "mixed.jsonl").open("w") as f:
        f.write(json.dumps({"text": "Zorblax is a small country. Its capital is Quimbleton."}) + "\n")
    for path, max_len in ((data, 64), (data, 50), (tmp_path / "mixed.jsonl", 64)):
        encoded, _ = prepare_data(TrainConfig(base="", data=[str(path)], output="", max_len=max_len),
                                  load_tokenizer(demo_hf_checkpoint()))
        shown = preview(path, hf_tok, n=4, max_len=max_len)
        assert [min(e.tokens, max_len) for e in shown.examples] == [len(e.input_ids) for e in encoded]
        # The engine masks nothing at the first position: trained counts match label counts.
        assert [e.trained_tokens for e in shown.examples] == [e.trained_tokens for e in encoded]


def test_the_assistant_answer_is_what_is_trained(hf_tok, tmp_path: Path) -> None:
    data = write_fact_dataset(tmp_path / "fact.jsonl", 3)
    shown = preview(data, hf_tok, n=2, max_len=512)
    assert (shown.format, shown.count, shown.template, len(shown.examples)) == ("messages", 3, "model", 2)
    first = shown.examples[0]
    assert first.line == 1 and not first.cut and not first.dropped
    trained = "".join(t for t, kind in first.pieces if kind == TRAINED)
    prompt = "".join(t for t, kind in first.pieces if kind == PROMPT)
    answer = json.loads(data.read_text().splitlines()[0])["messages"][1]["content"]
    assert trained == answer + "<|im_end|>\n"
    assert "<|im_start|>user\nWhat is the capital of Zorblax?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert describe(first, 512) == f"line 1: {first.tokens} tokens, {first.trained_tokens} trained"
    # Loss on every token: nothing is prompt any more.
    everything = preview(data, hf_tok, n=1, max_len=512, assistant_only=False).examples[0]
    assert {kind for _, kind in everything.pieces} == {TRAINED} and everything.trained_tokens == first.tokens


def test_the_cut(hf_tok, tmp_path: Path) -> None:
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"prompt": "Say yes.", "completion": "yes " * 40}) + "\n")
    full = preview(data, hf_tok, max_len=512).examples[0]
    cut = preview(data, hf_tok, max_len=full.tokens - 10).examples[0]
    assert cut.cut and not cut.dropped and cut.tokens == full.tokens
    assert cut.trained_tokens == full.trained_tokens - 10
    kept = "".join(t for t, kind in cut.pieces if kind != CUT)
    dropped = "".join(t for t, kind in cut.pieces if kind == CUT)
    assert kept + dropped == "".join(t for t, _ in full.pieces)
    assert hf_tok.tokenize(kept)[: full.tokens - 10] == hf_tok.tokenize(kept)  # the cut falls on a token edge
    assert "cut at" in describe(cut, full.tokens - 10)
    # Cut before the answer: nothing left to learn, so training skips it.
    none = preview(data, hf_tok, max_len=10).examples[0]
    assert none.dropped and none.trained_tokens == 0 and "skipped" in describe(none, 10)


def test_gguf_base_and_dataset_errors(demo_gguf: Path, tmp_path: Path, hf_tok) -> None:
    data = write_fact_dataset(tmp_path / "fact.jsonl", 2)
    gguf_tok = base_tokenizer(demo_gguf)  # llama.cpp's vocabulary (no dequantized copy in this test's cache)
    from_gguf = preview(data, gguf_tok, n=2, max_len=512)
    from_hf = preview(data, hf_tok, n=2, max_len=512)
    assert from_gguf.template == "gguf"
    assert [e.pieces for e in from_gguf.examples] == [e.pieces for e in from_hf.examples]
    assert [e.tokens for e in from_gguf.examples] == [e.tokens for e in from_hf.examples]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(DatasetError, match=r"1 invalid JSON line \(line 2\)"):
        preview(bad, hf_tok)
    # A dataset already read is taken as it is.
    assert preview(load_dataset(data), hf_tok, n=1).examples[0].pieces == from_hf.examples[0].pieces


def _recording(tokenizer: BaseTokenizer) -> tuple[BaseTokenizer, list[int]]:
    """``tokenizer`` with the length of every text its tokenize and prefix_chars are given recorded."""
    sizes: list[int] = []

    def tokenize(text: str) -> list[int]:
        sizes.append(len(text))
        return tokenizer.tokenize(text)

    def prefix_chars(text: str, n: int) -> int:
        sizes.append(len(text))
        return tokenizer.prefix_chars(text, n)

    return BaseTokenizer(tokenizer.template, tokenize, prefix_chars, tokenizer.ends), sizes


def test_a_huge_example_is_tokenized_only_as_far_as_it_is_shown(hf_tok, tmp_path: Path) -> None:
    """A 5 MB example froze the app: the Rust tokenizer holds the GIL for the whole text. Only a prefix that gives
    max_len tokens and a margin is tokenized; the pieces shown are those of the whole text, its count a bound."""
    words = "lorem ipsum dolor sit amet " * 20_000  # 540,000 characters
    data = tmp_path / "huge.jsonl"
    texts = [{"text": words}, {"text": "short one"}]
    chats = [{"messages": [{"role": "user", "content": "Say it."}, {"role": "assistant", "content": words}]},
             {"messages": [{"role": "user", "content": words}, {"role": "assistant", "content": "No."}]}]
    for rows in (texts, chats):
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tokenizer, sizes = _recording(hf_tok)
        shown = preview(data, tokenizer, n=3, max_len=64)
        assert max(sizes) <= 2 * FIRST_CHARS_PER_TOKEN * (64 + PREFIX_MARGIN)
        for example, record in zip(shown.examples, load_dataset(data).records, strict=True):
            if len(record.messages[0]["content"]) + len(record.messages[-1]["content"]) < 100:
                continue
            whole = tokenize_record(record.messages, hf_tok.template, hf_tok.tokenize, 64, ends=hf_tok.ends)
            assert example.pieces == shown_pieces(whole, hf_tok.prefix_chars)  # cut where training cuts
            assert (example.trained_tokens, example.dropped) == (whole.example.trained_tokens, whole.dropped)
            assert example.cut and not example.exact and 64 < example.tokens < whole.length
            assert describe(example, 64).startswith(f"line {record.line}: more than 64 tokens, ")
    data.write_text(json.dumps(texts[1]) + "\n")
    short = preview(data, hf_tok, max_len=64).examples[0]
    assert short.exact and describe(short, 64) == f"line 1: {short.tokens} tokens, {short.trained_tokens} trained"


def test_a_huge_answer_of_a_pair_is_tokenized_only_as_far_as_it_is_shown(hf_tok, tmp_path: Path) -> None:
    from tuillm.core.train.pairs import load_pairs, preview_pairs

    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "Sky?", "chosen": "Blue.", "rejected": "no " * 200_000}) + "\n")
    tokenizer, sizes = _recording(hf_tok)
    chosen, rejected = preview_pairs(load_pairs(data), tokenizer, n=1, max_len=64).examples
    assert max(sizes) <= 2 * FIRST_CHARS_PER_TOKEN * (64 + PREFIX_MARGIN)
    assert chosen.exact and not chosen.cut
    assert not rejected.exact and rejected.cut and "more than 64 tokens" in describe(rejected, 64)
