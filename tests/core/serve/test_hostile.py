"""Hostile request bodies against the app in-process (the real demo model behind it): whatever the JSON, the answer
is a success or an error in the API's shape with a 4xx/503 status, never a 500 or a crash-log entry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuillm.core.chat.engine import ChatSession
from tuillm.core.errors import crash_log_path
from tuillm.core.serve.app import create_app
from tuillm.core.serve.models import ModelHost, served_models
from tuillm.core.settings import Config

ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "robot", 3]),
                                 "content": st.one_of(st.text(max_size=40), ANY_JSON)})
SMALL_TOKENS = st.one_of(st.integers(-3, 3), st.just(10**9), st.floats(), st.text(max_size=3))
OPENAI_BODY = st.fixed_dictionaries({"model": st.sampled_from(["demo", "nope", "", 7])}, optional={
    "messages": st.lists(MESSAGE, max_size=3),
    "max_tokens": SMALL_TOKENS,
    "temperature": st.one_of(st.floats(), st.integers(-10, 10), st.text(max_size=3)),
    "top_p": st.floats(), "seed": st.integers(), "presence_penalty": st.floats(),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=600), max_size=20), ANY_JSON),
    "response_format": st.one_of(ANY_JSON, st.fixed_dictionaries({
        "type": st.sampled_from(["json_schema", "json_object", "text", "yaml"]),
        "json_schema": st.fixed_dictionaries({"name": st.just("x"), "schema": ANY_JSON})})),
    "n": st.integers(-1, 3), "stream": st.booleans(), "echo": st.one_of(st.booleans(), ANY_JSON),
    "logprobs": st.one_of(st.none(), st.booleans(), st.integers(-1, 25)),
    # Completions' prompt: text, token ids (in and out of the vocabulary, negative, huge), nested lists, anything.
    "prompt": st.one_of(st.text(max_size=30), st.lists(st.integers(-2, 10**30), max_size=4),
                        st.lists(st.lists(st.integers(-1, 60000), max_size=4), max_size=2), ANY_JSON),
})
OLLAMA_BODY = st.fixed_dictionaries({"model": st.sampled_from(["demo", "demo:latest", "nope"])}, optional={
    "messages": st.lists(MESSAGE, max_size=3), "prompt": st.one_of(st.text(max_size=30), ANY_JSON),
    "stream": st.booleans(), "format": st.one_of(st.just("json"), st.just("xml"), ANY_JSON),
    "keep_alive": st.one_of(st.sampled_from(["5m", "-1", "0", "1h30m", "5 minutes", "1e400"]), ANY_JSON),
    "options": st.one_of(ANY_JSON, st.fixed_dictionaries({"num_predict": SMALL_TOKENS, "temperature": st.floats(),
                                                          "stop": ANY_JSON})),
})


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    config = Config()
    host = ModelHost(served_models(["demo"], [], config), config, n_ctx=256)
    with TestClient(create_app(host)) as test_client:
        yield test_client
    host.close()


def _check(reply, path: str) -> None:
    assert reply.status_code in (200, 400, 404, 503), (reply.status_code, reply.text[:300])
    if reply.status_code != 200:
        error = reply.json()["error"]
        assert error["message"] if path.startswith("/v1") else error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=OPENAI_BODY, path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_openai_bodies(client: TestClient, body: dict, path: str) -> None:
    if path == "/v1/completions":
        body = {"prompt": body.pop("messages", "Hi"), **body}
    _check(client.post(path, content=json.dumps(body).encode()), path)
    assert not crash_log_path().exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=OLLAMA_BODY, path=st.sampled_from(["/api/chat", "/api/generate", "/api/show"]))
def test_ollama_bodies(client: TestClient, body: dict, path: str) -> None:
    options = body.get("options")
    if isinstance(options, dict) and isinstance(options.get("num_predict"), int) and options["num_predict"] <= 0:
        options["num_predict"] = 1  # Ollama's -1 means "to the end of the context": valid, only slow
    _check(client.post(path, content=json.dumps(body).encode()), path)
    assert not crash_log_path().exists()


EMBED_INPUT = st.one_of(st.text(max_size=30), st.lists(st.text(max_size=12), max_size=4),
                        st.lists(st.integers(-2, 60000), max_size=3), ANY_JSON)
EMBED_BODY = st.fixed_dictionaries({"model": st.sampled_from(["demo", "demo:latest", "nope", "", 7])}, optional={
    "input": EMBED_INPUT, "prompt": st.one_of(st.text(max_size=30), ANY_JSON),
    "encoding_format": st.one_of(st.sampled_from(["float", "base64", "int8"]), ANY_JSON),
    "dimensions": st.one_of(st.integers(-2, 600), ANY_JSON), "truncate": ANY_JSON,
    "keep_alive": st.one_of(st.sampled_from(["5m", "-1", "1e400"]), ANY_JSON),
    "options": st.one_of(ANY_JSON, st.fixed_dictionaries({"num_ctx": st.one_of(st.integers(-5, 300), ANY_JSON)})),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=EMBED_BODY, path=st.sampled_from(["/v1/embeddings", "/api/embed", "/api/embeddings"]))
def test_embedding_bodies(client: TestClient, body: dict, path: str) -> None:
    _check(client.post(path, content=json.dumps(body).encode()), path)
    assert not crash_log_path().exists()


@pytest.mark.parametrize("body", [{"prompt": ""}, {"prompt": "", "echo": True, "logprobs": 1}, {"prompt": [""]},
                                  {"prompt": []}, {"prompt": [[]], "echo": True, "max_tokens": 0}])
def test_an_empty_prompt_is_400_not_a_request_that_never_ends(client: TestClient, body: dict) -> None:
    # It was an AssertionError inside llama-cpp-python on the engine's thread, and the request waited forever.
    reply = client.post("/v1/completions", json={"model": "demo", "max_tokens": 2, **body})
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "the prompt is empty: there is nothing to continue"


def test_a_bug_in_the_engine_is_a_500_naming_the_crash_log_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ChatSession, "_generate", broken)
    config = Config()
    host = ModelHost(served_models(["demo"], [], config), config, n_ctx=256)
    with TestClient(create_app(host), raise_server_exceptions=False) as broken_client:
        reply = broken_client.post("/v1/completions", json={"model": "demo", "prompt": "Hi", "max_tokens": 2})
    host.close()
    assert reply.status_code == 500 and "ZeroDivisionError: a bug" in reply.json()["error"]["message"]
    assert crash_log_path().exists()
    crash_log_path().unlink()
