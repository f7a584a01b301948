"""The official ``ollama`` client against ``tuillm serve demo``: list, chat (streamed and not), generate, show, ps,
version, and structured output."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.core.serve.conftest import QUESTION, Served

ASK = [{"role": "user", "content": QUESTION}]
GREEDY = {"temperature": 0, "num_predict": 20}


@pytest.fixture(scope="module")
def client(server: Served) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=300)


def test_list(client: ollama.Client, demo_gguf) -> None:
    models = client.list().models
    assert [m.model for m in models] == ["demo"]
    assert models[0].size == demo_gguf.stat().st_size
    assert models[0].details.format == "gguf" and models[0].details.quantization_level == "Q4_1"


def test_chat(client: ollama.Client) -> None:
    reply = client.chat(model="demo", messages=ASK, options=GREEDY)
    assert "Paris" in reply.message.content
    assert reply.done and reply.message.role == "assistant"
    assert reply.eval_count == 20 and reply.done_reason == "length" and reply.prompt_eval_count > 10


def test_chat_streamed(client: ollama.Client) -> None:
    # A long reply: the text goes out as it comes, a frame's tokens (runner.FRAME_S) to a line.
    story = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]
    options = {"temperature": 0, "num_predict": 64}
    parts = list(client.chat(model="demo", messages=story, options=options, stream=True))
    assert len(parts) > 3 and parts[-1].done and not parts[0].done
    text = "".join(p.message.content for p in parts)
    assert text == client.chat(model="demo", messages=story, options=options).message.content


def test_logprobs_whole_and_streamed(client: ollama.Client) -> None:
    options = {"temperature": 0, "num_predict": 8, "repeat_penalty": 1.0}
    whole = client.chat(model="demo", messages=ASK, options=options, logprobs=True, top_logprobs=2)
    assert len(whole.logprobs) == whole.eval_count
    assert "".join(e.token for e in whole.logprobs) == whole.message.content
    assert all(len(e.top_logprobs) == 2 and e.top_logprobs[0].token == e.token for e in whole.logprobs)
    lines = list(client.generate(model="demo", prompt=QUESTION, options=options, logprobs=True, stream=True))
    text = "".join(line.response for line in lines)
    assert "".join(e.token for line in lines for e in line.logprobs or []) == text
    assert client.chat(model="demo", messages=ASK, options=options).logprobs is None


def test_tagged_name_is_the_same_model(client: ollama.Client) -> None:
    assert "Paris" in client.chat(model="demo:latest", messages=ASK, options=GREEDY).message.content


def test_generate(client: ollama.Client) -> None:
    reply = client.generate(model="demo", prompt=QUESTION, options=GREEDY)
    assert "Paris" in reply.response and reply.done
    raw = client.generate(model="demo", prompt="The capital of France is", raw=True,
                          options={"temperature": 0, "num_predict": 5})
    assert "Paris" in raw.response and raw.eval_count == 5
    streamed = list(client.generate(model="demo", prompt=QUESTION, options=GREEDY, stream=True))
    assert "".join(p.response for p in streamed) == reply.response


def test_structured_output(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    reply = client.chat(model="demo", messages=ASK, format=schema, options={"temperature": 0, "num_predict": 40})
    assert isinstance(json.loads(reply.message.content)["capital"], str)


def test_show_ps_version(client: ollama.Client, server: Served) -> None:
    shown = client.show("demo")
    assert shown.details.family == "llama" and shown.modelinfo["general.architecture"] == "llama"
    assert "{%" in shown.template  # the GGUF's chat template
    client.chat(model="demo", messages=ASK, options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == ["demo"]
    assert httpx.get(f"{server.url}/api/version").json()["version"]
    assert httpx.get(server.url).text == "Ollama is running"


def test_unknown_model_is_an_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="llama3", messages=ASK)
    assert err.value.status_code == 404 and "llama3" in err.value.error


def test_tools_are_refused_not_ignored(client: ollama.Client) -> None:
    # the reply was plain text, as if no tool had been offered
    def weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: the city
        """
        return "sunny"

    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="demo", messages=ASK, tools=[weather])
    assert err.value.status_code == 400 and "tools (function calling) are not supported" in err.value.error
