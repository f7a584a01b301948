"""A generation that fails mid-stream (llama.cpp's decode failing, a bug) ends its stream as its API says an error:
an SSE ``data: {"error": ...}`` event without ``[DONE]`` (OpenAI's client raises ``APIError``), an NDJSON
``{"error": ...}`` line (Ollama's raises ``ResponseError``); the text before it was delivered, and the request is
logged as failed. It was the text ``[error: ...]`` inside the model's reply, and a stream that ended as if whole.

The server runs in-process (the real app under uvicorn, the real demo model) so that llama.cpp's decode can be made
to fail after a few tokens: ``llama_cpp.Llama.eval``, which llama-cpp-python's generate calls once per token."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator

import httpx
import llama_cpp
import ollama
import openai
import pytest

from tests.core.serve.conftest import QUESTION
from tuillm.core.errors import crash_log_path
from tuillm.core.serve.guard import RequestRecord
from tuillm.core.serve.models import served_models
from tuillm.core.serve.server import ServeOptions, Server
from tuillm.core.settings import Config

BOUND_S = 60  # a bound on waiting for the log line, so a request never logged fails instead of hanging
ASK = [{"role": "user", "content": QUESTION}]
GOOD_EVALS = 3  # the prompt's and two tokens': three tokens are sampled, then the decode fails
DECODE_ERROR = "llama.cpp failed while generating: "


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, list[RequestRecord]]]:
    config = Config()
    records: list[RequestRecord] = []
    server = Server(served_models(["demo"], [], config), config, ServeOptions(port=0, n_ctx=512), log=records.append)
    server.start()
    yield server, records
    server.stop()


@pytest.fixture
def fail_decode(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseException], None]:
    """``fail_decode(exc)``: from now on llama.cpp's decode raises ``exc`` after ``GOOD_EVALS`` good ones (a
    RuntimeError is what llama-cpp-python raises when llama_decode fails: a device error, a full KV cache)."""
    def arm(exc: BaseException) -> None:
        evals = itertools.count()
        original = llama_cpp.Llama.eval

        def failing(self: llama_cpp.Llama, tokens: list[int]) -> None:
            if next(evals) >= GOOD_EVALS:
                raise exc
            original(self, tokens)

        monkeypatch.setattr(llama_cpp.Llama, "eval", failing)

    return arm


def _reference(server: Server) -> str:
    """The greedy reply the failing one starts as (its first tokens are the same)."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=BOUND_S)
    reply = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=12)
    assert reply.choices[0].message.content
    return reply.choices[0].message.content


def _logged(records: list[RequestRecord], path: str, after: int) -> RequestRecord:
    """The log record of the request to ``path`` made after ``after`` records (the stream's own: written once it
    ends, after its last event)."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        found = [r for r in records[after:] if r.path == path]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no log record for {path}: {records[after:]}")


def _failed(record: RequestRecord) -> None:
    assert record.status == 500 and record.error.startswith(DECODE_ERROR), record


def test_an_openai_chat_stream_raises_the_error_after_the_text(served: tuple[Server, list[RequestRecord]],
                                                              fail_decode: Callable[[BaseException], None]) -> None:
    server, records = served
    reference = _reference(server)
    fail_decode(RuntimeError("llama_decode returned -3"))
    after = len(records)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=BOUND_S)
    stream = client.chat.completions.create(model="demo", messages=ASK, temperature=0, max_tokens=12, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert type(err.value) is openai.APIError and err.value.message.startswith(DECODE_ERROR)
    assert err.value.body["type"] == "server_error" and err.value.body["message"] == err.value.message
    assert text and reference.startswith(text) and text != reference  # what came before the failure, and only it
    assert "[error" not in text
    _failed(_logged(records, "/v1/chat/completions", after))


def test_an_openai_completions_stream_raises_the_error(served: tuple[Server, list[RequestRecord]],
                                                       fail_decode: Callable[[BaseException], None]) -> None:
    server, records = served
    fail_decode(RuntimeError("llama_decode returned -3"))
    after = len(records)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=BOUND_S)
    text = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in client.completions.create(model="demo", prompt="The capital of France is", temperature=0,
                                               max_tokens=12, stream=True):
            text += chunk.choices[0].text
    assert type(err.value) is openai.APIError and err.value.message.startswith(DECODE_ERROR)
    assert text and "[error" not in text
    _failed(_logged(records, "/v1/completions", after))


@pytest.mark.parametrize("route", ["chat", "generate"])
def test_an_ollama_stream_raises_the_error_after_the_text(served: tuple[Server, list[RequestRecord]],
                                                          fail_decode: Callable[[BaseException], None],
                                                          route: str) -> None:
    server, records = served
    reference = _reference(server)
    fail_decode(RuntimeError("llama_decode returned -3"))
    after = len(records)
    client = ollama.Client(host=server.url, timeout=BOUND_S)
    options = {"temperature": 0, "num_predict": 12}
    parts = client.chat(model="demo", messages=ASK, stream=True, options=options) if route == "chat" else \
        client.generate(model="demo", prompt=QUESTION, stream=True, options=options)
    text = ""
    with pytest.raises(ollama.ResponseError) as err:
        for part in parts:
            text += part.message.content if route == "chat" else part.response
    assert err.value.error.startswith(DECODE_ERROR)
    assert text and reference.startswith(text) and text != reference and "[error" not in text
    _failed(_logged(records, f"/api/{route}", after))


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": ASK, "max_tokens": 12}),
    ("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 12}),
    ("/api/chat", {"messages": ASK, "options": {"num_predict": 12}}),
])
def test_the_error_is_the_streams_last_event_and_no_done_follows(served: tuple[Server, list[RequestRecord]],
                                                                  fail_decode: Callable[[BaseException], None],
                                                                  path: str, body: dict) -> None:
    server, _ = served
    fail_decode(RuntimeError("llama_decode returned -3"))
    reply = httpx.post(f"{server.url}{path}", json={"model": "demo", "stream": True, "temperature": 0, **body},
                       timeout=BOUND_S)
    assert reply.status_code == 200  # the head went out with the first text
    events = [json.loads(line.removeprefix("data: ")) for line in reply.text.splitlines() if line.strip()]
    *texts, last = events
    assert texts and all("error" not in event for event in texts)
    if path.startswith("/v1"):
        assert "[DONE]" not in reply.text
        assert last["error"]["type"] == "server_error" and last["error"]["message"].startswith(DECODE_ERROR)
    else:
        assert set(last) == {"error"} and last["error"].startswith(DECODE_ERROR)
        assert not any(event.get("done") for event in texts)


def test_a_bug_mid_stream_is_an_error_event_naming_the_crash_log(served: tuple[Server, list[RequestRecord]],
                                                                  fail_decode: Callable[[BaseException], None],
                                                                  ) -> None:
    server, records = served
    fail_decode(ZeroDivisionError("a bug"))
    after = len(records)
    client = ollama.Client(host=server.url, timeout=BOUND_S)
    with pytest.raises(ollama.ResponseError) as err:
        for _ in client.chat(model="demo", messages=ASK, stream=True, options={"num_predict": 12}):
            pass
    assert err.value.error.startswith("unexpected error: ZeroDivisionError: a bug; details in ")
    record = _logged(records, "/api/chat", after)
    assert record.status == 500 and record.error == err.value.error  # it was logged as the server's stop (503)
    assert crash_log_path().exists()
    crash_log_path().unlink()


def test_a_decode_failure_of_a_whole_reply_is_a_500(served: tuple[Server, list[RequestRecord]],
                                                     fail_decode: Callable[[BaseException], None]) -> None:
    server, records = served
    fail_decode(RuntimeError("llama_decode returned -3"))
    after = len(records)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=BOUND_S)
    with pytest.raises(openai.InternalServerError) as err:  # it was a 400, as if the request were at fault
        client.chat.completions.create(model="demo", messages=ASK, max_tokens=12)
    assert err.value.body["message"].startswith(DECODE_ERROR) and err.value.body["type"] == "server_error"
    _failed(_logged(records, "/v1/chat/completions", after))
