"""Bad requests get the right status in the API's error shape, one log line each, and the server stays up."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from tests.core.serve.conftest import QUESTION, Served, start_server, stop_server

KEY = "s3cret-key"
ORIGIN = "http://app.example"
ASK = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A small context (so a long prompt does not fit) and an API key."""
    served = start_server(tmp_path_factory.mktemp("home"), "demo", "--ctx", "64", "--api-key", KEY,
                          "--cors", ORIGIN)
    yield served
    stop_server(served)
    assert "Traceback" not in served.log()


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A context no machine holds: every load is refused by the memory estimate."""
    served = start_server(tmp_path_factory.mktemp("home"), "demo", "--ctx", "200000000")
    yield served
    stop_server(served)
    assert "Traceback" not in served.log()


def _client(served: Served, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0, timeout=300)


def test_unknown_model_is_404(keyed: Served) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        _client(keyed).chat.completions.create(model="gpt-4o", messages=ASK)
    assert "gpt-4o" in err.value.message and err.value.body["code"] == "model_not_found"


def test_malformed_json_is_400(keyed: Served) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/v1/chat/completions", "/api/chat"):
        reply = httpx.post(f"{keyed.url}{path}", content=b'{"model": "demo", "messages": [', headers=auth)
        assert reply.status_code == 400
        assert "malformed JSON" in str(reply.json()["error"])
    wrong = httpx.post(f"{keyed.url}/v1/chat/completions", json={"model": "demo", "messages": "hi"}, headers=auth)
    assert wrong.status_code == 400 and "messages" in wrong.json()["error"]["message"]


def test_out_of_range_sampling_is_400(keyed: Served) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).chat.completions.create(model="demo", messages=ASK, temperature=9)
    assert "temperature: must be a number from 0 to 5" in err.value.message


@pytest.mark.parametrize("penalty", [0.0, -1.5])
def test_a_repeat_penalty_not_above_0_is_400(keyed: Served, penalty: float) -> None:
    # llama.cpp divides the logits by it: 0 was accepted
    client = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="demo", messages=ASK, options={"repeat_penalty": penalty, "num_predict": 2})
    assert err.value.status_code == 400
    assert err.value.error == f"repeat_penalty: must be a number above 0 and at most 5, not {penalty}"
    with pytest.raises(openai.BadRequestError) as oerr:
        _client(keyed).chat.completions.create(model="demo", messages=ASK, extra_body={"repeat_penalty": penalty})
    assert "repeat_penalty: must be a number above 0 and at most 5" in oerr.value.message


def test_stream_options_without_a_stream_is_400(keyed: Served) -> None:
    # it was accepted and ignored; OpenAI refuses it too
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).chat.completions.create(model="demo", messages=ASK, stream_options={"include_usage": True})
    assert err.value.body["message"] == "stream_options: only allowed when stream is true"
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).completions.create(model="demo", prompt="Hi", stream=False,
                                          stream_options={"include_usage": True})
    assert err.value.body["message"] == "stream_options: only allowed when stream is true"


def test_prompt_longer_than_the_context_is_400_with_the_numbers(keyed: Served) -> None:
    long = [{"role": "user", "content": "Tell me about Paris. " * 40}]
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).chat.completions.create(model="demo", messages=long, max_tokens=4)
    assert err.value.body["code"] == "context_length_exceeded"
    assert "longer than the context (64)" in err.value.message
    # and the server answers the next one
    reply = _client(keyed).chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                                   max_tokens=2)
    assert reply.usage.completion_tokens >= 1


def test_missing_or_wrong_key_is_401(keyed: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(keyed, key="wrong").models.list()
    assert httpx.get(f"{keyed.url}/v1/models").status_code == 401
    assert httpx.get(f"{keyed.url}/api/tags").status_code == 401
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=keyed.url).list()
    assert err.value.status_code == 401
    good = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    assert [m.model for m in good.list().models] == ["demo"]


def test_body_too_large_is_413(keyed: Served) -> None:
    big = b'{"model": "demo", "prompt": "' + b"x" * (9 << 20) + b'"}'
    reply = httpx.post(f"{keyed.url}/v1/completions", content=big, headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 413


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_a_chunked_body_too_large_is_413(keyed: Served, path: str) -> None:
    # no Content-Length to refuse it by: the limit is met while the body is read (it was a 500, BodyTooLarge)
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "demo", "prompt": "'
        for _ in range(9):
            yield b"x" * (1 << 20)
        yield b'"}'

    after = len(keyed.lines)
    reply = httpx.post(f"{keyed.url}{path}", content=chunks(), headers={"Authorization": f"Bearer {KEY}"},
                       timeout=60)
    assert reply.status_code == 413 and "the request body is over" in reply.text
    line = keyed.wait_for_line(" 413 ", after=after)
    assert re.search(rf"POST {path} 413 \d+\.\d\ds \(the request body is over", line), line


def test_a_client_that_leaves_while_sending_is_499_not_500(keyed: Served) -> None:
    after = len(keyed.lines)
    with socket.create_connection(("127.0.0.1", int(keyed.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\nContent-Length: 100\r\n\r\n" + b'{"model": ')
        time.sleep(0.5)  # the route waits for the rest of the body
    line = keyed.wait_for_line("POST /api/chat", after=after)
    assert " 499 " in line and "while sending its request" in line, line
    assert not re.search(r" 0\.00s", line)  # its seconds are counted from when it came in
    assert keyed.proc.poll() is None


def test_model_that_does_not_fit_names_the_estimate(huge: Served) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        _client(huge).chat.completions.create(model="demo", messages=ASK)
    assert err.value.status_code == 503
    assert "needs about" in err.value.message and "available" in err.value.message
    with pytest.raises(ollama.ResponseError) as oerr:
        ollama.Client(host=huge.url).generate(model="demo", prompt="hi")
    assert "needs about" in oerr.value.error
    # a request's context refused where the server's fits is a 400 (test_models); here neither fits: the server's
    with pytest.raises(ollama.ResponseError) as oerr:
        ollama.Client(host=huge.url).generate(model="demo", prompt="hi", options={"num_ctx": 10 ** 12})
    assert oerr.value.status_code == 503 and "a context of 1000000000000 tokens needs about" in oerr.value.error
    assert huge.proc.poll() is None
    assert [m.id for m in _client(huge).models.list().data] == ["demo"]


def test_tools_are_refused_not_ignored(keyed: Served) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).chat.completions.create(model="demo", messages=ASK, tools=[tool])
    assert "tools" in err.value.message


def test_cors_only_for_the_allowed_origin(keyed: Served, huge: Served) -> None:
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = httpx.options(f"{keyed.url}/v1/chat/completions", headers=ask)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(f"{keyed.url}/v1/chat/completions", headers=ask | {"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    # without --cors: no CORS headers at all, so no web page can read the answers
    plain = httpx.get(f"{huge.url}/v1/models", headers={"Origin": ORIGIN})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize(("schema", "needle"), [
    ({"type": "object", "properties": {"a": {"$ref": "https://example.test/schema.json"}}}, "only '#/...' refs"),
    ({"type": "nonsense"}, "cannot be turned into a grammar"),
    # each made a grammar llama.cpp refuses, and it crashed the server (a segfault) on the null sampler
    ({"enum": []}, "allows no value at all (root:"),
    ({"type": []}, "allows no value at all (root:"),
    ({"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"]}, "allows no value at all (a:"),
])
def test_bad_json_schemas_are_400_and_fetch_nothing(keyed: Served, schema: dict, needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).chat.completions.create(
            model="demo", messages=ASK, response_format={"type": "json_schema",
                                                         "json_schema": {"name": "x", "schema": schema}})
    assert needle in err.value.message
    client = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    assert client.chat(model="demo", messages=ASK, options={"num_predict": 2}).message.content  # still serving


def test_a_grammar_llama_cpp_refuses_is_an_error_not_a_crash() -> None:
    """The last guard, under the schema check: whatever grammar reaches the model is parsed by llama.cpp first."""
    from tuillm.core.errors import TuillmError
    from tuillm.core.llama.abort import StopFlag
    from tuillm.core.llama.loader import new_llama
    from tuillm.core.llama.model import LlamaModel
    from tuillm.core.llama.options import Sampling
    from tuillm.core.paths import demo_model_path

    model = LlamaModel(new_llama(str(demo_model_path()), n_ctx=256, verbose=False))
    tokens = model.tokenize("Hi", add_bos=model.add_bos)
    with pytest.raises(TuillmError, match="llama.cpp could not parse it"):
        next(model.generate(tokens, Sampling(grammar='root ::= \nspace ::= " "?'), StopFlag()))


def test_images_are_refused(keyed: Served) -> None:
    client = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="demo", messages=[{"role": "user", "content": "What is this?", "images": [b"\x89PNG"]}])
    assert err.value.status_code == 400 and "images" in err.value.error


@pytest.mark.parametrize(("fields", "needle"), [
    ({"logit_bias": {"1e3": 5}}, "logit_bias: keys must be token ids, not '1e3'"),
    ({"logit_bias": {"-3": 5}}, "logit_bias: keys must be token ids"),
    ({"logit_bias": {"9" * 5000: 5}}, "logit_bias: keys must be token ids, not '9999"),  # was a 500 (int())
    ({"logit_bias": {"\u0661\u0662": 5}}, "logit_bias: keys must be token ids"),  # Arabic-Indic 12: not token 12
    ({"logit_bias": {"12": 101}}, "logit_bias: token 12: the bias must be a number from -100 to 100, not 101"),
    ({"logit_bias": {"12": -1e9}}, "the bias must be a number from -100 to 100, not -1000000000.0"),
    ({"logit_bias": {"99999999": -100}}, "logit_bias: token 99999999 is not in the model's vocabulary (0 to 49151)"),
    ({"logit_bias": {str(i): 1 for i in range(1025)}}, "logit_bias: at most 1024 tokens, not 1025"),
    ({"logprobs": True, "top_logprobs": 21}, "logprobs: the alternatives to each token must be a whole number from 0 "
                                             "to 20, not 21"),
    ({"top_logprobs": 2}, "top_logprobs needs logprobs: true"),
])
def test_bad_logit_bias_and_logprobs_are_400(keyed: Served, fields: dict, needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=2, **fields)
    assert needle in err.value.message
    assert keyed.proc.poll() is None


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "demo", "messages": [{"role": "user", "content": "\ud800"}]}),
    ("/v1/chat/completions", {"model": "\ud800", "messages": ASK}),
    ("/v1/completions", {"model": "demo", "prompt": "\ud83d"}),
    ("/api/chat", {"model": "demo", "messages": [{"role": "user", "content": "a\udfffb"}]}),
    ("/api/generate", {"model": "demo", "raw": True, "prompt": "\ud83d"}),
    ("/api/show", {"model": "\ud800"}),
])
def test_a_lone_surrogate_is_400(keyed: Served, path: str, body: dict) -> None:
    # JSON's \u escapes can write half a UTF-16 pair, which no UTF-8 text holds: it was a 500 (UnicodeEncodeError)
    reply = httpx.post(f"{keyed.url}{path}", content=json.dumps(body), headers={"Authorization": f"Bearer {KEY}"},
                       timeout=60)
    assert reply.status_code == 400, reply.text
    assert "lone surrogate" in reply.text
    assert keyed.proc.poll() is None


def test_an_echoed_prompt_longer_than_the_context_is_400_with_the_numbers(keyed: Served) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(keyed).completions.create(model="demo", prompt="word " * 200, max_tokens=2, echo=True, logprobs=1)
    assert err.value.code == "context_length_exceeded" and "longer than the context (64)" in err.value.message
    assert keyed.proc.poll() is None


@pytest.mark.parametrize("keep_alive", ["5 minutes", "", "5x", "1.2.3", True, [5], {"m": 5}, "9" * 80])
@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_a_bad_keep_alive_is_400_and_changes_nothing(keyed: Served, path: str, keep_alive: object) -> None:
    ask = {"messages": ASK} if path == "/api/chat" else {"prompt": QUESTION}
    for body in ({"model": "demo", "keep_alive": keep_alive, **ask}, {"model": "demo", "keep_alive": keep_alive}):
        reply = httpx.post(f"{keyed.url}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        assert reply.status_code == 400, reply.text
        assert "is not a duration (seconds, or like 30s, 5m, 1h" in reply.json()["error"]
    assert keyed.proc.poll() is None


@pytest.mark.parametrize(("path", "fields", "needle"), [
    ("/api/chat", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools (function calling)"),
    ("/api/generate", {"images": ["aGk="]}, "images are not supported"),
    ("/api/generate", {"suffix": "}"}, "suffix (insertion, fill-in-the-middle)"),
    ("/api/generate", {"template": "{{ .Prompt }}"}, "template: a request's own prompt template"),
    ("/api/generate", {"context": [1, 2, 3]}, "context: an earlier reply's tokens"),
    ("/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice: function calling is not supported"),
    ("/v1/chat/completions", {"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice:"),
    ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions (function calling)"),
    ("/v1/chat/completions", {"function_call": {"name": "f"}}, "function_call: function calling is not supported"),
    ("/v1/chat/completions", {"max_completion_tokens": 0}, "max_completion_tokens: must be a whole number from 1"),
    ("/v1/chat/completions", {"max_tokens": 2, "max_completion_tokens": 3}, "max_tokens (2) and max_completion_t"),
])
def test_what_would_change_the_answer_is_refused_naming_it(keyed: Served, path: str, fields: dict,
                                                            needle: str) -> None:
    # each was accepted and ignored (max_completion_tokens 0 read as absent): a reply without what was asked for
    ask = {"prompt": "Hi"} if path == "/api/generate" else {"messages": [{"role": "user", "content": "Hi"}]}
    reply = httpx.post(f"{keyed.url}{path}", json={"model": "demo", "stream": False, **ask, **fields},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert needle in (error["message"] if path.startswith("/v1") else error)


def test_what_asks_for_nothing_is_accepted(keyed: Served) -> None:
    reply = _client(keyed).chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                                   tool_choice="none", max_completion_tokens=2, temperature=1)
    assert reply.usage.completion_tokens == 2
    client = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"})
    assert client.generate(model="demo", prompt="Hi", context=[], suffix="", options={"num_predict": 2}).done


@pytest.mark.parametrize(("path", "fields", "needle"), [
    ("/v1/chat/completions", {"max_tokens": True}, "max_tokens: Input should be a valid integer"),  # was 1
    ("/v1/chat/completions", {"max_tokens": "4"}, "max_tokens: Input should be a valid integer"),
    ("/v1/chat/completions", {"temperature": "0.5"}, "temperature: Input should be a valid number"),
    ("/v1/chat/completions", {"stream": "yes"}, "stream: Input should be a valid boolean"),  # was a stream
    ("/v1/completions", {"logprobs": True}, "logprobs: Input should be a valid integer"),  # was 1
    ("/api/chat", {"options": {"num_predict": True}}, "options.num_predict: Input should be a valid integer"),
    ("/api/chat", {"options": {"num_ctx": 1e30}}, "options.num_ctx: Input should be a valid integer"),
    ("/api/generate", {"stream": "no"}, "stream: Input should be a valid boolean"),
])
def test_a_value_of_another_json_type_is_400(keyed: Served, path: str, fields: dict, needle: str) -> None:
    ask = {"prompt": "Hi"} if path in ("/api/generate", "/v1/completions") else \
        {"messages": [{"role": "user", "content": "Hi"}]}
    reply = httpx.post(f"{keyed.url}{path}", json={"model": "demo", **ask, **fields},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert reply.status_code == 400, reply.text
    assert needle in reply.text


def test_methods_head_and_a_slash_too_many(keyed: Served) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    wrong = httpx.get(f"{keyed.url}/v1/chat/completions", headers=auth)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"  # it had no Allow
    assert httpx.head(f"{keyed.url}/api/chat", headers=auth).headers["allow"] == "POST"
    for path in ("/api/tags", "/v1/models", "/v1/models/demo", "/api/version", "/api/ps", "/"):
        head, get = httpx.head(f"{keyed.url}{path}", headers=auth), httpx.get(f"{keyed.url}{path}", headers=auth)
        assert head.status_code == get.status_code == 200, path  # HEAD was a 405 but on /
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    # a POST redirected (307) is sent again elsewhere by some clients, dropped by others: a 404 in the API's shape
    slash = httpx.post(f"{keyed.url}/v1/chat/completions/", json={"model": "demo", "messages": ASK}, headers=auth)
    assert slash.status_code == 404 and slash.json()["error"]["type"] == "not_found_error"
    assert httpx.post(f"{keyed.url}/api/chat/", json={}, headers=auth).json() == {"error": "POST /api/chat/: Not Found"}


def test_the_guards_refusals_carry_cors_headers_for_the_allowed_origin(keyed: Served) -> None:
    # a browser page of the allowed origin saw a CORS failure instead of the 401 or the 413
    no_key = httpx.get(f"{keyed.url}/v1/models", headers={"Origin": ORIGIN})
    assert no_key.status_code == 401 and no_key.headers["access-control-allow-origin"] == ORIGIN
    big = httpx.post(f"{keyed.url}/api/chat", content=b"x" * (9 << 20),
                     headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"})
    assert big.status_code == 413 and big.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(f"{keyed.url}/v1/models", headers={"Origin": "http://evil.example"})
    assert other.status_code == 401 and "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(("model", "shown"), [
    ("\x1b[31mRED\x1b[0m", r"\x1b[31mRED\x1b[0m"),  # was logged as 'RED'
    ("evil\u202egpj.exe", r"evil\u202egpj.exe"),  # a right-to-left override passed through
    ("line\nbreak", r"line\nbreak"),
])
def test_what_a_request_sent_is_shown_escaped_not_stripped(keyed: Served, model: str, shown: str) -> None:
    after = len(keyed.lines)
    reply = httpx.post(f"{keyed.url}/api/chat", json={"model": model, "messages": ASK},
                       headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 404 and f"model '{shown}' not found" in reply.json()["error"]
    keyed.wait_for_line(re.escape("POST /api/chat 404 ") + r".*" + re.escape(f"(model '{shown}' not found"),
                        after=after)


def test_a_path_is_shown_escaped_and_a_long_name_cut(keyed: Served) -> None:
    after = len(keyed.lines)
    reply = httpx.get(f"{keyed.url}/%1b]0;PWNED%07", headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 404 and reply.json() == {"error": r"GET /\x1b]0;PWNED\x07: Not Found"}
    keyed.wait_for_line(re.escape(r"GET /\x1b]0;PWNED\x07 404 "), after=after)  # was logged as 'GET / 404'
    after = len(keyed.lines)
    with pytest.raises(openai.NotFoundError) as err:
        _client(keyed).chat.completions.create(model="m" * 100_000, messages=ASK)
    assert len(err.value.message) < 400 and f"model '{'m' * 200}…' not found" in err.value.message
    line = keyed.wait_for_line(r"POST /v1/chat/completions 404 ", after=after)
    assert len(line) < 400  # it was a 100 KB line
