"""core.llama's typed model on the real demo GGUF: quiet loading, tokens, pieces, prefix matching, stop."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from tuillm.core.errors import ModelFileError
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.loader import quiet_llama
from tuillm.core.llama.model import SCORE_BATCH, DecodeFailed, LlamaModel, PromptScore
from tuillm.core.llama.options import LoadOptions, Sampling


def test_quiet_llama_prints_nothing(demo_gguf: Path, capfd: pytest.CaptureFixture[str]) -> None:
    llm = quiet_llama(str(demo_gguf), vocab_only=True)
    try:
        assert llm.tokenize(b"hello", add_bos=False)
    finally:
        llm.close()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_model_tokens_pieces_and_prefix(demo_gguf: Path) -> None:
    model = LlamaModel.load(demo_gguf, LoadOptions(n_ctx=256, n_gpu_layers=0))
    try:
        assert model.n_ctx == 256 and model.n_tokens == 0
        assert model.bos_text == "<|im_start|>" and model.eos_text == "<|im_end|>"
        assert "tokenizer.chat_template" in model.metadata
        text = "<|im_start|>user\nThe lighthouse keeper<|im_end|>"
        tokens = model.tokenize(text, add_bos=False)
        assert b"".join(model.piece(t) for t in tokens) == b"user\nThe lighthouse keeper"  # specials: nothing
        assert model.is_eog(tokens[-1]) and not model.is_eog(tokens[1])

        prompt = model.tokenize("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", add_bos=False)
        with closing(model.generate(prompt, Sampling(temperature=0.0), StopFlag())) as tokens_out:
            first = next(tokens_out)
        assert isinstance(first, int) and model.n_tokens == len(prompt)
        # The evaluated prompt is kept for a longer one that starts with it.
        assert model.cached_prefix([*prompt, first]) == len(prompt)
        assert model.cached_prefix(prompt) == len(prompt) - 1  # all cached: the last is replayed for logits
        model.reset()
        assert model.cached_prefix(prompt) == 0
    finally:
        model.close()


def test_stop_set_before_the_prompt_ends_the_generator_quietly(demo_gguf: Path) -> None:
    model = LlamaModel.load(demo_gguf, LoadOptions(n_ctx=2048, n_batch=64, n_gpu_layers=0))
    try:
        stop = StopFlag()
        stop.set()  # llama.cpp aborts the prompt's evaluation at its first poll
        prompt = model.tokenize("lighthouse storm sea " * 200, add_bos=False)
        assert list(model.generate(prompt, Sampling(), stop)) == []
        assert model.prompt_tokens_evaluated < len(prompt)
    finally:
        model.close()


def _same_scores(got: PromptScore, want: PromptScore, top: int) -> None:
    assert [e.piece for e in got.entries] == [e.piece for e in want.entries]
    assert [e.logprob for e in got.entries] == pytest.approx([e.logprob for e in want.entries], abs=1e-3)
    assert [[p for p, _ in e.top] for e in got.entries] == [[p for p, _ in e.top[:top]] for e in want.entries]


def test_a_prefix_shared_with_the_last_scored_prompt_is_not_scored_again(demo_gguf: Path) -> None:
    """lm-eval's requests share a few-shot context and differ in their last tokens; each is scored whole."""
    model = LlamaModel.load(demo_gguf, LoadOptions(n_ctx=1024, n_gpu_layers=0))
    try:
        shots = " ".join(f"Q: what is {i} plus {i}? A: {2 * i}." for i in range(20))  # past a scoring batch (64)
        right, wrong = (model.tokenize(f"{shots} Q: what is 7 plus 1? A: {a}", add_bos=False) for a in (8, 9))
        shared = next(i for i, (x, y) in enumerate(zip(right, wrong, strict=True)) if x != y)
        assert shared > SCORE_BATCH
        fresh = model.score(wrong, 3, StopFlag())  # the first scoring: every token
        model.score(right, 3, StopFlag())
        before = model.prompt_tokens_evaluated
        again = model.score(wrong, 2, StopFlag())
        assert model.prompt_tokens_evaluated - before == len(wrong) - shared + 1  # the last shared one decoded again
        _same_scores(again, fresh, 2)
        # A scoring that asks for more alternatives than were kept scores every token again.
        before = model.prompt_tokens_evaluated
        _same_scores(model.score(wrong, 3, StopFlag()), fresh, 3)
        assert model.prompt_tokens_evaluated - before == len(wrong)
        # A reply since replaces the cache past its prompt's own prefix: only what still matches is kept.
        first_half = wrong[:40]
        with closing(model.generate(first_half, Sampling(temperature=0.0), StopFlag())) as tokens_out:
            next(tokens_out)
        before = model.prompt_tokens_evaluated
        _same_scores(model.score(wrong, 3, StopFlag()), fresh, 3)
        assert model.prompt_tokens_evaluated - before == len(wrong) - 40 + 1
    finally:
        model.close()


def test_a_file_llama_cpp_refuses_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x00" * 100)
    with pytest.raises(ModelFileError, match="junk.gguf: llama.cpp could not load it") as info:
        LlamaModel.load(junk, LoadOptions(n_ctx=64, n_gpu_layers=0))
    assert "\n" not in str(info.value)


def test_threads_default_to_the_machine_s_decode_threads(demo_gguf: Path) -> None:
    # Not llama-cpp-python's own default (half the logical CPUs): the physical performance cores.
    from tuillm.core.llama.logits import load_llama
    from tuillm.core.models.hardware import default_threads

    for threads, expected in ((None, default_threads()), (3, 3)):
        model = LlamaModel.load(demo_gguf, LoadOptions(n_ctx=64, n_gpu_layers=0, n_threads=threads))
        try:
            assert model._llm.context_params.n_threads == expected
        finally:
            model.close()
        llm = load_llama(demo_gguf, n_ctx=64, threads=threads)  # the conversion quality report's loads
        try:
            assert llm.context_params.n_threads == expected
        finally:
            llm.close()


def test_a_failure_while_scoring_is_a_decode_failure(demo_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp failing while it scores a prompt (completions' echo) is the machine's or the model's failure, as
    in a reply (the server's 500), not a refusal of the request (a 400); the model stays usable after it."""
    from llama_cpp._internals import LlamaContext

    model = LlamaModel.load(demo_gguf, LoadOptions(n_ctx=256, n_gpu_layers=0))
    try:
        tokens = model.tokenize("The lighthouse keeper watched the storm", add_bos=False)

        def failing(_ctx: LlamaContext, _batch: object) -> None:
            raise RuntimeError("llama_decode returned -3")

        with monkeypatch.context() as patch:
            patch.setattr(LlamaContext, "decode", failing)
            with pytest.raises(DecodeFailed, match="^the prompt's log-probabilities: llama.cpp failed"):
                model.score(tokens, 2, StopFlag())
        assert len(model.score(tokens, 2, StopFlag()).entries) == len(tokens) - 1
    finally:
        model.close()
