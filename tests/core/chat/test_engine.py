"""The chat engine on the real demo GGUF through real llama.cpp (short replies, small contexts)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.core.gguf_copy import copy_gguf
from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import (
    ContextTrimmed,
    ModelLoaded,
    ModelUnloaded,
    ReplyDone,
    ReplyFailed,
    ReplyStarted,
    Token,
)
from tuillm.core.chat.fitting import fit_messages
from tuillm.core.chat.plain import PlainPrompt
from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.loader import new_llama
from tuillm.core.llama.model import SCORE_BATCH
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.options import OptionError

GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=16)
QUESTION = [{"role": "system", "content": "You are brief."},
            {"role": "user", "content": "What is the capital of France?"}]


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def __call__(self, event: object) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def session(demo_gguf: Path) -> Iterator[tuple[ChatSession, Recorder]]:
    rec = Recorder()
    s = ChatSession(rec)
    s.load(demo_gguf, LoadOptions(n_ctx=512, seed=7)).result()
    yield s, rec
    s.close()


def n_prompt_evaluated(session: ChatSession) -> int:
    """llama.cpp's own count of prompt tokens decoded in batches (independent of the engine's bookkeeping)."""
    return session._loaded.model.prompt_tokens_evaluated


def test_streams_a_reply_with_stats(session: tuple[ChatSession, Recorder]) -> None:
    s, rec = session
    assert isinstance(rec.events[0], ModelLoaded) and rec.events[0].n_ctx == 512
    done = s.reply(QUESTION, GREEDY).result()
    tokens = rec.of(Token)
    assert isinstance(rec.events[1], ReplyStarted) and rec.events[-1] == done
    assert "".join(t.text for t in tokens) == done.text and done.text.strip()
    st = done.stats
    assert st.generated_tokens == len(tokens) > 0
    assert st.prompt_tokens == rec.events[1].prompt_tokens > 10
    assert st.finish_reason in ("stop", "length") and st.generated_tokens <= 16
    assert st.ttft_s > 0 and st.total_s >= st.ttft_s
    assert st.tokens_per_s > 0 or st.generated_tokens == 1
    assert st.context_used == s.context_used >= st.prompt_tokens


def test_same_tokens_as_llama_cpp_python_chat_completion(demo_gguf: Path,
                                                          session: tuple[ChatSession, Recorder]) -> None:
    """Greedy decoding through the engine matches llama-cpp-python's own chat pipeline token for token."""
    s, _ = session
    done = s.reply(QUESTION, GREEDY).result()
    llm = new_llama(str(demo_gguf), n_ctx=512, verbose=False)
    try:
        ref = llm.create_chat_completion(QUESTION, temperature=0.0, repeat_penalty=1.0, max_tokens=16)
    finally:
        llm.close()
    assert done.text == ref["choices"][0]["message"]["content"]
    assert done.stats.prompt_tokens == ref["usage"]["prompt_tokens"]


def test_stop_is_honoured_within_one_token(session: tuple[ChatSession, Recorder]) -> None:
    s, rec = session

    def stop_at_third(event: object) -> None:
        if isinstance(event, Token) and len(rec.of(Token)) == 3:
            s.stop()

    done = s.reply(QUESTION, Sampling(temperature=0.0, max_tokens=64), listener=stop_at_third).result()
    assert len(rec.of(Token)) == 3
    assert done.stats.finish_reason == "cancelled" and done.stats.generated_tokens == 3


def test_stop_from_another_thread_mid_stream(session: tuple[ChatSession, Recorder]) -> None:
    s, rec = session
    started = threading.Event()

    def watch(event: object) -> None:
        if isinstance(event, Token):
            started.set()

    future = s.reply(QUESTION, Sampling(temperature=0.0, max_tokens=400), listener=watch)
    assert started.wait(60)
    s.stop()
    done = future.result()
    assert done.stats.finish_reason == "cancelled"
    assert done.stats.generated_tokens == len(rec.of(Token)) < 400


def test_stop_during_a_long_prompt_aborts_its_evaluation(demo_gguf: Path) -> None:
    long_question = [{"role": "user", "content": "Count the words: " + "lighthouse storm sea " * 300}]
    rec = Recorder()
    with ChatSession(rec) as s:
        s.load(demo_gguf, LoadOptions(n_ctx=2048, n_batch=128)).result()

        def stop_when_started(event: object) -> None:
            if isinstance(event, ReplyStarted):
                s.stop()

        done = s.reply(long_question, GREEDY, listener=stop_when_started).result()
        assert done.stats.finish_reason == "cancelled" and done.stats.generated_tokens == 0
        assert done.stats.prompt_tokens > 900
        assert n_prompt_evaluated(s) < done.stats.prompt_tokens  # llama.cpp stopped part way
        # The half-evaluated cache does not leak into the next reply: it answers like a fresh session.
        after_abort = s.reply(QUESTION, GREEDY).result().text
        s.reset_cache().result()
        assert s.reply(QUESTION, GREEDY).result().text == after_abort
        # Stopped while still queued: nothing is evaluated at all.
        blocker = s.reply(QUESTION, GREEDY)
        queued = s.reply(long_question, GREEDY)
        s.stop()
        blocker.result()
        assert queued.result().stats.finish_reason == "cancelled"


def test_second_turn_reuses_the_evaluated_prefix(demo_gguf: Path, session: tuple[ChatSession, Recorder]) -> None:
    s, rec = session
    first = s.reply(QUESTION, GREEDY).result()
    history = [*QUESTION, {"role": "assistant", "content": first.text},
               {"role": "user", "content": "And the capital of Germany?"}]
    before = n_prompt_evaluated(s)
    second = s.reply(history, GREEDY).result()
    evaluated = n_prompt_evaluated(s) - before
    st = second.stats
    # Everything of turn one (its prompt, and its reply as re-rendered by the template) was kept.
    assert st.cached_tokens >= first.stats.prompt_tokens + first.stats.generated_tokens - 2
    assert evaluated == st.prompt_tokens - st.cached_tokens
    assert evaluated < st.prompt_tokens / 2

    # A fresh session evaluates the same prompt in full, and answers the same.
    with ChatSession() as fresh:
        fresh.load(demo_gguf, LoadOptions(n_ctx=512)).result()
        again = fresh.reply(history, GREEDY).result()
        assert again.stats.cached_tokens == 0
        assert n_prompt_evaluated(fresh) == again.stats.prompt_tokens
    assert again.text == second.text


def test_a_scored_prompt_matches_decoding_token_by_token_and_stays_cached(
        session: tuple[ChatSession, Recorder]) -> None:
    s, rec = session
    text = " ".join(f"Step {i}: the keeper lit the lamp." for i in range(12))  # past one scoring batch (64)
    score = s.score(PlainPrompt(text), 5).result()
    tokens = [score.first] + [e.piece for e in score.entries]
    assert b"".join(tokens).decode() == text and len(tokens) > SCORE_BATCH + 10
    # Each position's alternatives are what a reply to the text before it sees at its first token, on both sides
    # of a batch boundary.
    for k in (3, SCORE_BATCH, SCORE_BATCH + 1, len(tokens) - 1):
        rec.events.clear()
        s.reply(PlainPrompt(b"".join(tokens[:k]).decode()),
                replace(GREEDY, max_tokens=1, logprobs=5)).result()
        (first,) = rec.of(Token)
        assert [p for p, _ in first.logprob.top] == [p for p, _ in score.entries[k - 1].top]
        assert [lp for _, lp in first.logprob.top] == pytest.approx([lp for _, lp in score.entries[k - 1].top],
                                                                    abs=1e-3)
    s.score(PlainPrompt(text), 0).result()
    done = s.reply(PlainPrompt(text), replace(GREEDY, max_tokens=2)).result()
    assert done.stats.cached_tokens == len(tokens) - 1  # the scored prompt was kept: only its last token again
    with pytest.raises(TuillmError, match=r"longer than the context \(512\)"):
        s.score(PlainPrompt("word " * 600), 1).result()
    stopped = StopFlag()
    stopped.set()  # a server's client that left
    with pytest.raises(TuillmError, match="the prompt's log-probabilities: stopped"):
        s.score(PlainPrompt(text), 1, stopped).result()
    # A template's markers in the prompt are special tokens, named in the scores: the pieces still spell it.
    marked = "<|im_start|>user\nHi<|im_end|>"
    score = s.score(PlainPrompt(marked), 2).result()
    assert b"".join([score.first, *(e.piece for e in score.entries)]).decode() == marked and len(score.entries) < 6


def test_seed_makes_sampling_reproducible(session: tuple[ChatSession, Recorder]) -> None:
    s, _ = session
    sampling = Sampling(temperature=1.0, max_tokens=12, seed=1234)
    a = s.reply(QUESTION, sampling).result().text
    b = s.reply(QUESTION, sampling).result().text
    assert a == b


def test_fit_messages_drops_oldest_turns_never_the_system_prompt() -> None:
    msgs = [{"role": "system", "content": "S"}]
    for i in range(5):
        msgs += [{"role": "user", "content": f"u{i}"}, {"role": "assistant", "content": f"a{i}"}]
    msgs.append({"role": "user", "content": "last"})

    def count(ms: list[dict[str, str]]) -> list[int]:
        return [0] * (10 * len(ms))  # ten tokens a message

    kept, tokens, dropped = fit_messages(msgs, count, n_ctx=80, max_tokens=20)
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "last"
    assert dropped == 6 and [m["content"] for m in kept[1:3]] == ["u3", "a3"]
    assert len(tokens) + 20 <= 80
    # Too long even alone: everything but the system prompt and the last message goes.
    kept, _, dropped = fit_messages(msgs, count, n_ctx=10, max_tokens=20)
    assert [m["content"] for m in kept] == ["S", "last"] and dropped == 10


def test_context_overflow_trims_and_reports(demo_gguf: Path) -> None:
    rec = Recorder()
    with ChatSession(rec) as s:
        s.load(demo_gguf, LoadOptions(n_ctx=256)).result()
        system = {"role": "system", "content": "You answer in French."}
        history = [system]
        for i in range(8):
            history += [{"role": "user", "content": f"Tell me fact number {i} about the sea and its fish."},
                        {"role": "assistant", "content": f"Fact {i}: the sea is salty and fish swim in it."}]
        history.append({"role": "user", "content": "Summarise."})
        full = s.count_tokens(history).result()
        assert full + 32 > 256
        done = s.reply(history, Sampling(temperature=0.0, max_tokens=32)).result()
        trimmed = rec.of(ContextTrimmed)
        assert len(trimmed) == 1 and trimmed[0].dropped >= 2 and "oldest" in trimmed[0].message
        assert done.stats.prompt_tokens + 32 <= 256
        kept = [system, *history[1 + trimmed[0].dropped:]]
        assert s.count_tokens(kept).result() == done.stats.prompt_tokens
        assert s.template.render(kept).startswith("<|im_start|>system\nYou answer in French.")


def test_prompt_longer_than_context_is_a_clean_error(demo_gguf: Path) -> None:
    rec = Recorder()
    with ChatSession(rec) as s:
        s.load(demo_gguf, LoadOptions(n_ctx=64)).result()
        with pytest.raises(TuillmError, match="longer than the context"):
            s.reply([{"role": "user", "content": "word " * 200}], Sampling(max_tokens=8)).result()
        assert rec.of(ReplyFailed)
        # The session stays usable.
        assert s.reply([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4)).result().text is not None


def test_a_grammar_llama_cpp_refuses_fails_the_reply_before_it_starts(
        session: tuple[ChatSession, Recorder]) -> None:
    """A server sends its 200 head when the reply starts: a grammar refused after that came as an error event in
    a stream that had said OK, not as the 400 it is."""
    s, rec = session
    with pytest.raises(TuillmError, match="llama.cpp could not parse it"):
        s.reply(QUESTION, replace(GREEDY, grammar='root ::= \nspace ::= " "?')).result()
    assert rec.of(ReplyFailed) and not rec.of(ReplyStarted)
    assert s.reply(QUESTION, replace(GREEDY, max_tokens=4)).result().text  # the session stays usable


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_unload_closes_the_model(demo_gguf: Path) -> None:
    rec = Recorder()
    with ChatSession(rec) as s:
        s.load(demo_gguf, LoadOptions(n_ctx=128, use_mmap=True)).result()
        assert s.loaded and _mapped(demo_gguf.resolve())
        s.unload().result()
        assert not s.loaded and rec.of(ModelUnloaded)
        assert not _mapped(demo_gguf.resolve())
        with pytest.raises(TuillmError, match="no model"):
            s.reply(QUESTION).result()


def test_quantized_kv_cache_and_options(demo_gguf: Path) -> None:
    rec = Recorder()
    with ChatSession(rec) as s:
        s.load(demo_gguf, LoadOptions(n_ctx=256, kv_type="q8_0", n_threads=1, n_batch=64, use_mmap=False)).result()
        assert any("flash attention" in getattr(e, "message", "") for e in rec.events)
        assert s.reply(QUESTION, Sampling(max_tokens=4)).result().stats.generated_tokens > 0
        # A KV cache type llama.cpp does not take is refused where the options are made, before any load.
        with pytest.raises(OptionError, match="kv-type"):
            s.load(demo_gguf, LoadOptions(kv_type="q2_k")).result()


def test_bad_models_are_refused_before_loading(demo_gguf: Path, tmp_path: Path) -> None:
    with ChatSession() as s:
        with pytest.raises(ModelFileError, match="no such file"):
            s.load(tmp_path / "missing.gguf").result()
        junk = tmp_path / "junk.gguf"
        junk.write_bytes(b"not a model at all" * 100)
        with pytest.raises(ModelFileError, match="junk.gguf"):
            s.load(junk).result()
        truncated = tmp_path / "truncated.gguf"
        truncated.write_bytes(demo_gguf.read_bytes()[: 30_000_000])
        with pytest.raises(ModelFileError, match="truncated"):
            s.load(truncated).result()
        # Structurally a GGUF, but llama.cpp refuses it: its own reason comes through in one line.
        broken = copy_gguf(demo_gguf, tmp_path / "broken.gguf", {}, drop_tensor="blk.3.attn_q.weight")
        with pytest.raises(ModelFileError, match="llama.cpp could not load it .*blk.3.attn_q.weight") as info:
            s.load(broken).result()
        assert "\n" not in str(info.value)
        with pytest.raises(TuillmError, match="needs about .* available"):
            s.load(demo_gguf, LoadOptions(n_ctx=100_000_000)).result()
        with pytest.raises(ModelFileError, match="not a LoRA adapter"):
            s.load(demo_gguf, LoadOptions(lora_path=str(demo_gguf))).result()
        assert not s.loaded


def test_events_after_reply_done(session: tuple[ChatSession, Recorder]) -> None:
    s, rec = session
    s.reply(QUESTION, Sampling(max_tokens=2)).result()
    assert isinstance(rec.events[-1], ReplyDone)
    with pytest.raises(TuillmError, match="end with a user message"):
        s.reply(QUESTION[:1]).result()
