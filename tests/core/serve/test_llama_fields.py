"""llama-server's and Ollama's further fields against ``tuillm serve demo``, through the official clients: ``grammar``
and ``json_schema`` constrain the reply, ``typical_p``, ``repeat_last_n`` and ``mirostat`` reach the sampler, each
checked where it enters (a 400 in the API's shape); what is not done is refused, and so is a message without
content. Each was accepted and ignored before."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest
from openai import BadRequestError, OpenAI

from tests.core.serve.conftest import QUESTION, Served

ASK = [{"role": "user", "content": QUESTION}]
YES_NO = 'root ::= "yes" | "no"'
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}
SEEDS = (1, 2, 3)
HOT = 1.5  # a temperature at which different seeds give different replies


@pytest.fixture(scope="module")
def client(server: Served) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def olla(server: Served) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=300)


def _chat(client: OpenAI, max_tokens: int = 12, messages: list | None = None, **extra: object) -> str:
    reply = client.chat.completions.create(model="demo", messages=messages or ASK, max_tokens=max_tokens,
                                           extra_body=extra)
    return reply.choices[0].message.content or ""


# --- grammar and json_schema ----------------------------------------------------------------------------------

def test_a_grammar_constrains_chat_whole_and_streamed_and_completions(client: OpenAI) -> None:
    assert _chat(client, grammar=YES_NO) in ("yes", "no")
    chunks = client.chat.completions.create(model="demo", messages=ASK, max_tokens=12, stream=True,
                                            extra_body={"grammar": YES_NO})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) in ("yes", "no")
    text = client.completions.create(model="demo", prompt="Is Paris in France? Answer:", max_tokens=8,
                                     extra_body={"grammar": 'root ::= " yes" | " no"'})
    assert text.choices[0].text in (" yes", " no")


def test_a_json_schema_field_is_response_format_json_schema(client: OpenAI) -> None:
    chat = _chat(client, 80, [{"role": "user", "content": "The capital of France, as JSON."}], temperature=0,
                 json_schema=SCHEMA)
    text = client.completions.create(model="demo", prompt="The capital of France, as JSON:", max_tokens=80,
                                     temperature=0, extra_body={"json_schema": SCHEMA}).choices[0].text
    for reply in (chat, text):
        data = json.loads(reply)
        assert set(data) == {"city", "population"}
        assert isinstance(data["city"], str) and isinstance(data["population"], int)


def _nested(depth: int, hide: bool = False) -> str:
    # hide: a ")" literal in each group, which must not be taken for the group's end
    return "root ::= " + ('( ")" ' if hide else "(") * depth + '"a"' + ")" * depth


@pytest.mark.parametrize(("grammar", "message"), [
    ("root ::= (", "the grammar is not valid (llama.cpp could not parse it: a syntax error"),
    ('answer ::= "yes"', "the grammar is not valid"),  # no root rule
    ("root ::= " + '"a" ' * (1 << 18) + '"b"', "grammar: at most 1048576 characters, not"),
    (_nested(300), "grammar: groups nested at most 256 deep, not 300"),
    (_nested(300, hide=True), "grammar: groups nested at most 256 deep, not 300"),
    (_nested(20000), "grammar: groups nested at most 256 deep, not 20000"),  # llama.cpp's parser: a segfault
    # a comment ends at a "\r" for llama.cpp: the groups after it were not counted, and llama.cpp's parser crashed
    ('root ::= ( "a" # x\r' + _nested(20000)[9:] + ")", "grammar: groups nested at most 256 deep, not 20001"),
    ("".join(f"r{i} ::= r{i + 1}\n" for i in range(9000)), "grammar: at most 8192 rules and groups, not 9000"),
    # 50 of these held the model's thread for 15 s on the first token; the count in a literal is not one
    ('root ::= "{9}" ' + "e{0,1999} " * 50 + '\ne ::= "a"?', "grammar: {m,n} repetitions of at most 1024 copies "
     "in all, not 99950"),
    ("root ::= " + '"a"{' + "9" * 5000 + "}", "grammar: {m,n} repetitions of at most 1024 copies in all, not"),
    # 27 characters that held the model's thread 3.6 s for the first token (e{0,128}: minutes)
    ('root ::= e{0,16}\ne ::= "a"?', "grammar: too ambiguous for llama.cpp's sampler (more than 32768 parse"),
    # the same after a 1,000-word enum, which used up the walk that judged it: minutes a token
    ("root ::= big e{0,1024}\nbig ::= " + " | ".join(f'"label number {i}"' for i in range(1000)) + '\ne ::= "a"?',
     "grammar: too ambiguous for llama.cpp's sampler ("),
], ids=["unclosed", "no-root", "too-long", "too-deep", "depth-hidden", "deep-crash", "deep-crash-after-cr",
        "too-many-rules", "slow-repeats", "huge-count", "ambiguous", "ambiguous-after-an-enum"])
def test_a_grammar_refused_is_a_400_and_the_server_stays_up(client: OpenAI, grammar: str, message: str) -> None:
    with pytest.raises(BadRequestError) as err:
        _chat(client, grammar=grammar)
    assert err.value.body["message"].startswith(message) and err.value.body["type"] == "invalid_request_error"
    assert _chat(client, 2)  # still answering


@pytest.mark.parametrize(("path", "fields", "message"), [
    ("chat", {"grammar": YES_NO, "json_schema": SCHEMA}, "grammar and json_schema: give one way"),
    ("chat", {"grammar": YES_NO, "response_format": {"type": "json_object"}}, "grammar and response_format: give"),
    ("chat", {"json_schema": SCHEMA, "response_format": {"type": "json_schema",
                                                         "json_schema": {"name": "x", "schema": SCHEMA}}},
     "json_schema and response_format: give one way"),
    ("completions", {"grammar": YES_NO, "json_schema": {}}, "grammar and json_schema: give one way"),
])
def test_two_constraints_at_once_are_400(client: OpenAI, path: str, fields: dict, message: str) -> None:
    with pytest.raises(BadRequestError) as err:
        if path == "chat":
            _chat(client, **fields)
        else:
            client.completions.create(model="demo", prompt="Hi", max_tokens=4, extra_body=fields)
    assert err.value.body["message"].startswith(message)


def test_a_text_response_format_with_a_grammar_is_the_grammar(client: OpenAI) -> None:
    assert _chat(client, grammar=YES_NO, response_format={"type": "text"}) in ("yes", "no")


# --- typical_p, mirostat, repeat_last_n -----------------------------------------------------------------------

def test_typical_p_reaches_the_sampler(client: OpenAI) -> None:
    _chat(client, temperature=0)  # the same cache before each reply below: the same logits
    plain = {_chat(client, temperature=HOT, seed=seed) for seed in SEEDS}
    assert len(plain) > 1  # the seeds matter at this temperature...
    # ... but typical_p 0 keeps one candidate a step: whatever the seed, one reply
    assert len({_chat(client, temperature=HOT, seed=seed, typical_p=0.0) for seed in SEEDS}) == 1


def test_mirostat_reaches_the_sampler(client: OpenAI, olla: ollama.Client) -> None:
    # Mirostat 2.0 with a target surprise of 0 keeps the most likely token only: greedy, whatever the temperature
    greedy = _chat(client, temperature=0)
    assert {_chat(client, temperature=HOT, seed=seed) for seed in SEEDS} != {greedy}
    assert {_chat(client, temperature=HOT, seed=seed, mirostat=2, mirostat_tau=0.0) for seed in SEEDS} == {greedy}
    options = {"num_predict": 12, "temperature": HOT, "mirostat": 2, "mirostat_tau": 0.0, "mirostat_eta": 0.1}
    ogreedy = olla.chat(model="demo", messages=ASK, options={"num_predict": 12, "temperature": 0}).message.content
    assert {olla.chat(model="demo", messages=ASK, options=options | {"seed": seed}).message.content
            for seed in SEEDS} == {ogreedy}


def test_repeat_last_n_sets_the_penalties_window(client: OpenAI, olla: ollama.Client) -> None:
    # Greedy: a heavy repeat penalty over no window is no penalty at all, and differs from one over the default
    free = _chat(client, 30, temperature=0, repeat_penalty=1.0)
    assert _chat(client, 30, temperature=0, repeat_penalty=5.0) != free
    assert _chat(client, 30, temperature=0, repeat_penalty=5.0, repeat_last_n=0) == free
    ask = {"num_predict": 30, "temperature": 0}
    ofree = olla.chat(model="demo", messages=ASK, options=ask | {"repeat_penalty": 1.0}).message.content
    assert olla.chat(model="demo", messages=ASK, options=ask | {"repeat_penalty": 5.0}).message.content != ofree
    assert olla.chat(model="demo", messages=ASK,
                     options=ask | {"repeat_penalty": 5.0, "repeat_last_n": 0}).message.content == ofree
    # -1: the whole context, as Ollama's
    assert olla.chat(model="demo", messages=ASK, options=ask | {"repeat_last_n": -1}).message.content


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("typical_p", 1.5, "a number from 0 to 1"),
    ("mirostat", 3, "a whole number from 0 to 2"),
    ("mirostat_tau", -1.0, "a number from 0 to 100"),
    ("mirostat_eta", 2.0, "a number from 0 to 1"),
    ("repeat_last_n", -2, "a whole number from -1 to 1048576"),
])
def test_out_of_range_extras_are_400_in_each_api(client: OpenAI, olla: ollama.Client, name: str, value: float,
                                                 expected: str) -> None:
    refusal = f"{name}: must be {expected}, not {value}"
    with pytest.raises(BadRequestError) as err:
        _chat(client, **{name: value})
    assert err.value.body["message"] == refusal
    with pytest.raises(ollama.ResponseError) as oerr:
        olla.chat(model="demo", messages=ASK, options={name: value, "num_predict": 2})
    assert oerr.value.status_code == 400 and oerr.value.error == refusal


@pytest.mark.parametrize(("options", "message"), [
    ({"tfs_z": 0.5}, "options.tfs_z: tail-free sampling is not supported"),
    ({"penalize_newline": False}, "options.penalize_newline: false is not supported"),
])
def test_ollama_options_not_done_are_refused(olla: ollama.Client, options: dict, message: str) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        olla.generate(model="demo", prompt="Hi", options=options | {"num_predict": 2})
    assert err.value.status_code == 400 and err.value.error.startswith(message)
    # what is done anyway (tail-free sampling off, newlines penalized) is taken
    assert olla.generate(model="demo", prompt="Hi", options={"tfs_z": 1.0, "penalize_newline": True,
                                                             "num_predict": 2}).response


# --- messages without content ---------------------------------------------------------------------------------

CALL = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


@pytest.mark.parametrize(("message", "refusal"), [
    ({"role": "user"}, "messages[0].content: user messages need their content (text or parts), not null"),
    ({"role": "user", "content": None}, "messages[0].content: user messages need their content"),
    ({"role": "system", "content": None}, "messages[0].content: system messages need their content"),
    ({"role": "user", "content": []}, "messages[0].content: an empty list of parts (give at least one)"),
    ({"role": "assistant", "content": None}, "messages[0].content: assistant messages need their content"),
])
def test_a_message_without_content_is_400(server: Served, message: dict, refusal: str) -> None:
    # OpenAI refuses these too ("expected a string, got null", "empty array"); raw: the client's types forbid them
    reply = httpx.post(f"{server.url}/v1/chat/completions", timeout=300,
                       json={"model": "demo", "messages": [message, *ASK], "max_tokens": 2})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["message"].startswith(refusal) and error["type"] == "invalid_request_error"


def test_an_assistant_reply_that_called_tools_may_have_no_content(server: Served) -> None:
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": CALL}, *ASK]
    reply = httpx.post(f"{server.url}/v1/chat/completions", timeout=300,
                       json={"model": "demo", "messages": history, "max_tokens": 2})
    assert reply.status_code == 200, reply.text
