"""The official ``openai`` client against ``tuillm serve demo``: models, chat (whole and streamed), JSON schema,
stop sequences, usage, completions, concurrency and a client that leaves mid-stream."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from tests.core.serve.conftest import QUESTION, Served
from tuillm.core.chat.engine import ChatSession
from tuillm.core.llama.loader import quiet_llama
from tuillm.core.llama.options import LoadOptions

ASK = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def client(server: Served) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_lists_the_served_models(client: OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["demo"]
    model = client.models.retrieve("demo")
    assert model.id == "demo" and model.owned_by == "tuillm" and model.created > 0
    with pytest.raises(NotFoundError) as err:
        client.models.retrieve("no/such-model")
    assert err.value.code == "model_not_found" and "model 'no/such-model' not found; served here: demo" in str(
        err.value)


def test_chat_answers_paris(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=20)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].message.role == "assistant"


def test_streamed_chunks_arrive_before_the_end(client: OpenAI) -> None:
    # A long reply: the text goes out as it comes, a frame's tokens (runner.FRAME_S) to a chunk.
    story = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]
    chunks = list(client.chat.completions.create(model="demo", messages=story, temperature=0, max_tokens=64,
                                                 stream=True))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 3  # as it comes, not one piece at the end
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    whole = client.chat.completions.create(model="demo", messages=story, temperature=0, max_tokens=64)
    assert "".join(texts) == whole.choices[0].message.content


def test_usage_streams_only_when_asked_in_a_last_chunk_of_its_own(client: OpenAI) -> None:
    # It was always in the last choice's chunk; OpenAI sends it only with include_usage, in a chunk without choices.
    ask = dict(model="demo", messages=ASK, temperature=0, max_completion_tokens=3, stream=True)
    plain = list(client.chat.completions.create(**ask))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "length"
    counted = list(client.chat.completions.create(**ask, stream_options={"include_usage": True}))
    *chunks, last = counted
    assert last.choices == [] and last.usage.completion_tokens == 3  # max_completion_tokens is honoured
    assert last.usage.total_tokens == last.usage.prompt_tokens + 3 and last.id == chunks[0].id
    assert all(c.usage is None and c.choices for c in chunks) and chunks[-1].choices[0].finish_reason == "length"
    completions = list(client.completions.create(model="demo", prompt="Hi", max_tokens=2, stream=True,
                                                 stream_options={"include_usage": True}))
    assert completions[-1].choices == [] and completions[-1].usage.completion_tokens == 2
    assert all(c.usage is None for c in client.completions.create(model="demo", prompt="Hi", max_tokens=2,
                                                                  stream=True))


def test_json_schema_response_validates(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "The capital of France, as JSON."}], temperature=0,
        max_tokens=80, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    data = json.loads(reply.choices[0].message.content)
    assert set(data) == {"city", "population"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


def test_logit_bias_bans_and_forces_tokens(client: OpenAI, demo_gguf) -> None:
    from tuillm.core.llama.logits import llama_tokenize

    free = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=8)
    first = llama_tokenize(demo_gguf, free.choices[0].message.content)[0]
    banned = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=8,
                                            logit_bias={str(first): -100})
    assert llama_tokenize(demo_gguf, banned.choices[0].message.content)[0] != first
    hello = llama_tokenize(demo_gguf, " hello")[0]
    forced = client.completions.create(model="demo", prompt="Say:", temperature=0.8, max_tokens=3,
                                       logit_bias={str(hello): 100})
    assert forced.choices[0].text == " hello" * 3


def test_chat_logprobs_spell_the_reply_whole_streamed_and_cut_by_a_stop(client: OpenAI) -> None:
    # Greedy, with no repeat penalty: each token is then its step's most likely under the reported distribution.
    ask = dict(model="demo", messages=ASK, temperature=0, max_tokens=10, logprobs=True, top_logprobs=3,
               extra_body={"repeat_penalty": 1.0})
    whole = client.chat.completions.create(**ask)
    entries = whole.choices[0].logprobs.content
    assert len(entries) == whole.usage.completion_tokens
    assert "".join(e.token for e in entries) == whole.choices[0].message.content
    for e in entries:
        assert [a.logprob for a in e.top_logprobs] == sorted((a.logprob for a in e.top_logprobs), reverse=True)
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token
        assert e.logprob == pytest.approx(e.top_logprobs[0].logprob) and e.logprob <= 0
        assert sum(math.exp(a.logprob) for a in e.top_logprobs) <= 1 + 1e-6
        assert bytes(e.bytes).decode() == e.token
    chunks = list(client.chat.completions.create(**ask, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in entries]
    # The prompt is in the KV cache now: its last token is evaluated alone, so the logits differ in the last digits.
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in entries], abs=0.2)
    # A stop sequence cuts the text and the tokens that spelt it.
    stop = entries[3].token
    for chunks_or_reply in (client.chat.completions.create(**ask, stop=[stop]),
                            list(client.chat.completions.create(**ask, stop=[stop], stream=True))):
        if isinstance(chunks_or_reply, list):
            text = "".join(c.choices[0].delta.content or "" for c in chunks_or_reply if c.choices)
            tokens = [e.token for c in chunks_or_reply if c.choices and c.choices[0].logprobs
                      for e in c.choices[0].logprobs.content]
        else:
            text = chunks_or_reply.choices[0].message.content
            tokens = [e.token for e in chunks_or_reply.choices[0].logprobs.content]
        assert "".join(tokens) == text == "".join(e.token for e in entries[:3])
    assert client.chat.completions.create(model="demo", messages=ASK, max_tokens=2).choices[0].logprobs is None


def test_completion_logprobs_with_offsets(client: OpenAI) -> None:
    ask = dict(model="demo", prompt="The capital of France is", temperature=0, max_tokens=6, logprobs=2,
               extra_body={"repeat_penalty": 1.0})
    whole = client.completions.create(**ask).choices[0]
    assert "".join(whole.logprobs.tokens) == whole.text
    assert whole.logprobs.text_offset == [len("".join(whole.logprobs.tokens[:i])) for i in range(6)]
    assert all(len(top) == 2 and max(top.values()) == pytest.approx(lp)
               for top, lp in zip(whole.logprobs.top_logprobs, whole.logprobs.token_logprobs, strict=True))
    chunks = [c.choices[0].logprobs for c in client.completions.create(**ask, stream=True)
              if c.choices and c.choices[0].logprobs]
    assert [t for lp in chunks for t in lp.tokens] == whole.logprobs.tokens
    assert [o for lp in chunks for o in lp.text_offset] == whole.logprobs.text_offset


def test_echo_puts_the_prompt_first_with_its_logprobs_whole_and_streamed(client: OpenAI) -> None:
    prompt = "The capital of France is"
    ask = dict(model="demo", prompt=prompt, temperature=0, max_tokens=4, extra_body={"repeat_penalty": 1.0})
    plain = client.completions.create(**ask).choices[0].text
    echoed = client.completions.create(**ask, echo=True).choices[0]
    assert echoed.text == prompt + plain and echoed.logprobs is None
    whole = client.completions.create(**ask, echo=True, logprobs=3).choices[0]
    lp = whole.logprobs
    assert whole.text == prompt + plain == "".join(lp.tokens)
    n = len(lp.tokens) - 4  # the prompt's tokens, then the reply's 4
    assert "".join(lp.tokens[:n]) == prompt
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))]
    # The first token has nothing before it; every other one is scored, its alternatives sorted, most likely first.
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x < 0 for x in lp.token_logprobs[1:])
    assert all(len(top) == 3 and list(top.values()) == sorted(top.values(), reverse=True)
               for top in lp.top_logprobs[1:])
    # The prompt's scores (one batch, every position's logits) are what decoding one token at a time gives: the
    # last prompt token scored in the echo as the first token of a reply to the prompt before it.
    before = "".join(lp.tokens[:n - 1])
    step = client.completions.create(model="demo", prompt=before, temperature=0, max_tokens=1, logprobs=3,
                                     extra_body={"repeat_penalty": 1.0}).choices[0].logprobs
    assert step.top_logprobs[0] == pytest.approx(lp.top_logprobs[n - 1], abs=1e-3)
    chunks = [c.choices[0] for c in client.completions.create(**ask, echo=True, logprobs=3, stream=True) if c.choices]
    assert chunks[0].text == prompt and chunks[0].logprobs.tokens == lp.tokens[:n]  # the prompt comes first, whole
    assert "".join(c.text for c in chunks) == whole.text
    streamed = [c.logprobs for c in chunks if c.logprobs]
    assert [o for x in streamed for o in x.text_offset] == lp.text_offset
    assert [v for x in streamed for v in x.token_logprobs] == pytest.approx(lp.token_logprobs, abs=1e-9)


def _ids(demo_gguf: Path, text: str) -> list[int]:
    """``text``'s token ids under the demo, as a client with the model's tokenizer counts them."""
    llm = quiet_llama(str(demo_gguf), vocab_only=True)
    try:
        return llm.tokenize(text.encode(), add_bos=False, special=True)
    finally:
        llm.close()


def _lm_eval_score(client: OpenAI, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """A continuation's log-likelihood as lm-eval's ``local-completions`` asks for it and reads the answer: the
    tokens in a list of one, echo, logprobs 1, one new token; then the continuation's logprobs, and whether each
    was the most likely token at its position."""
    reply = client.completions.create(model="demo", prompt=[context + continuation], echo=True, logprobs=1,
                                      max_tokens=1, temperature=0, seed=1234)
    lp = reply.choices[0].logprobs
    assert len(lp.token_logprobs) == len(context) + len(continuation) + 1  # the prompt's, then the new token's
    scores, tops = lp.token_logprobs[len(context):-1], lp.top_logprobs[len(context):-1]
    return sum(scores), all(score == max(top.values()) for score, top in zip(scores, tops, strict=True))


def test_prompts_of_token_ids_as_lm_eval_sends_them(client: OpenAI, demo_gguf: Path) -> None:
    question = "The capital of France is"
    context = _ids(demo_gguf, question)
    ask = dict(model="demo", temperature=0, max_tokens=5, extra_body={"repeat_penalty": 1.0})
    # Generation from the ids is generation from the text they spell.
    from_ids = client.completions.create(**ask, prompt=context).choices[0].text
    assert from_ids == client.completions.create(**ask, prompt=question).choices[0].text
    assert "Paris" in from_ids
    # Log-likelihoods: the greedy continuation is greedy and likelier than another; the echo spells the text.
    paris, paris_greedy = _lm_eval_score(client, context, _ids(demo_gguf, " Paris"))
    london, london_greedy = _lm_eval_score(client, context, _ids(demo_gguf, " London"))
    assert paris_greedy and not london_greedy and paris > london
    echoed = client.completions.create(model="demo", prompt=[context], echo=True, logprobs=0, max_tokens=0)
    assert echoed.choices[0].text == question  # max_tokens 0: the prompt alone, scored
    assert echoed.usage.prompt_tokens == len(context) and echoed.usage.completion_tokens == 0
    assert len(echoed.choices[0].logprobs.token_logprobs) == len(context)
    streamed = list(client.completions.create(model="demo", prompt=[context], echo=True, max_tokens=0, stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == question
    assert streamed[-2].choices[0].finish_reason == "length" and streamed[-1].usage.completion_tokens == 0
    with pytest.raises(BadRequestError, match="token 99999 is not in the model's vocabulary"):
        client.completions.create(model="demo", prompt=[[*context, 99999]], max_tokens=1)


def test_several_prompts_are_answered_each_in_its_own_choice(client: OpenAI, demo_gguf: Path) -> None:
    questions = ["The capital of France is", "The capital of Italy is"]
    ask = dict(model="demo", temperature=0, max_tokens=4, extra_body={"repeat_penalty": 1.0})
    alone = [client.completions.create(**ask, prompt=question) for question in questions]
    together = client.completions.create(**ask, prompt=questions)
    assert [c.index for c in together.choices] == [0, 1]
    assert [c.text for c in together.choices] == [a.choices[0].text for a in alone]
    assert together.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert together.usage.completion_tokens == 8
    # lm-eval's batch of log-likelihoods (batch_size 2): what each scores alone.
    context, endings = _ids(demo_gguf, questions[0]), [_ids(demo_gguf, " Paris"), _ids(demo_gguf, " London")]
    batch = client.completions.create(model="demo", prompt=[context + e for e in endings], echo=True, logprobs=1,
                                      max_tokens=1, temperature=0)
    sums = [sum(c.logprobs.token_logprobs[len(context):-1]) for c in batch.choices]
    assert sums == pytest.approx([_lm_eval_score(client, context, e)[0] for e in endings], abs=1e-6)
    with pytest.raises(BadRequestError, match="a streamed completion takes one prompt"):
        client.completions.create(**ask, prompt=questions, stream=True)


def test_a_character_split_across_tokens_is_named_by_its_bytes(client: OpenAI) -> None:
    prompt = "The llama 🦙 met the 龘 dragon"  # the demo's tokenizer splits both characters into byte tokens
    lp = client.completions.create(model="demo", prompt=prompt, echo=True, logprobs=3,
                                   max_tokens=0).choices[0].logprobs
    split = [(t, at) for t, at in zip(lp.tokens, lp.text_offset, strict=True) if t.startswith("bytes:")]
    assert len(split) >= 4
    for token, at in zip(lp.tokens, lp.text_offset, strict=True):
        if token.startswith("bytes:"):  # its text (a space before the character) is there, then the character
            ascii_part = token[len("bytes:"):].split("\\x")[0]
            assert prompt[at:].startswith(ascii_part) and prompt[at + len(ascii_part)] in "🦙龘"
        else:
            assert prompt[at:at + len(token)] == token
    assert lp.text_offset == sorted(lp.text_offset)
    # The alternatives that are parts of characters keep their own names: none is folded into U+FFFD.
    assert not any("\ufffd" in name for top in lp.top_logprobs[1:] for name in top)


def test_stop_sequence_is_honoured(client: OpenAI) -> None:
    free = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=20)
    text = free.choices[0].message.content
    assert "Paris" in text
    stopped = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=20,
                                             stop=["Paris"])
    assert stopped.choices[0].message.content == text[: text.index("Paris")]
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < free.usage.completion_tokens


def test_usage_counts_are_right(client: OpenAI, demo_gguf) -> None:
    reply = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=7)
    with ChatSession() as session:
        session.load(demo_gguf, LoadOptions(n_ctx=4096)).result()
        prompt_tokens = session.count_tokens(ASK).result()
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == 7 and reply.choices[0].finish_reason == "length"
    assert reply.usage.total_tokens == prompt_tokens + 7


def test_completions_continue_plain_text(client: OpenAI) -> None:
    reply = client.completions.create(model="demo", prompt="The capital of France is", temperature=0,
                                      max_tokens=5)
    assert "Paris" in reply.choices[0].text
    assert reply.usage.completion_tokens == 5


def test_eight_concurrent_streams_complete(client: OpenAI, server: Served) -> None:
    answers: list[str] = []

    def ask() -> None:
        stream = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=16,
                                                stream=True)
        answers.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(answers) == 8 and all("Paris" in a for a in answers)
    assert client.models.list().data  # still up
    assert server.proc.poll() is None


def test_a_client_that_leaves_frees_the_model(client: OpenAI, server: Served) -> None:
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, max_tokens=400, stream=True)
    got = [c for _, c in zip(range(3), stream, strict=False)]
    assert len(got) == 3
    before = len(server.lines)
    stream.close()
    after = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=16)
    assert "Paris" in after.choices[0].message.content
    line = server.wait_for_line(r"/v1/chat/completions demo 499 ", after=before)
    assert "its generation stopped" in line  # the engine's reply ended as cancelled, not by its end or max_tokens
    assert int(line.split("+")[1].split()[0]) < 400


def test_a_client_that_leaves_a_whole_reply_stops_it(server: Served) -> None:
    body = {"model": "demo", "max_tokens": 1500, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}]}
    before = len(server.lines)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=2)
    line = server.wait_for_line(r"/v1/chat/completions demo 499 ", after=before)
    assert "its generation stopped" in line
    assert int(line.split("+")[1].split()[0]) < 1500


def test_a_client_that_leaves_while_its_prompt_is_scored_stops_the_scoring(client: OpenAI, server: Served) -> None:
    # ~3,000 tokens whose every position's logits are kept and read: seconds of work, stopped at the next poll.
    body = {"model": "demo", "prompt": "The lighthouse keeper watched the storm. " * 380, "echo": True,
            "logprobs": 5, "max_tokens": 1}
    before = len(server.lines)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=0.5)
    line = server.wait_for_line(r"/v1/completions 499 ", after=before)
    assert "client closed the connection; its scoring stopped" in line
    after = client.completions.create(model="demo", prompt="The capital of France is", temperature=0, max_tokens=4)
    assert "Paris" in after.choices[0].text
