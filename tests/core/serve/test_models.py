"""Which model answers: loaded on first request, swapped when another is asked for (also with requests of both
queued at once), a LoRA adapter served as a model of its own, unloaded after --idle-unload or a request's
keep_alive."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import ollama
import pytest

from tests.core.chat.test_lora import write_lora
from tests.core.serve.conftest import QUESTION, Served, start_server, stop_server

ASK = [{"role": "user", "content": QUESTION}]
GREEDY = {"temperature": 0, "num_predict": 20}
IDLE_S = 3


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_gguf: Path) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("models")
    other = shutil.copyfile(demo_gguf, folder / "other.gguf")
    strong = write_lora(folder / "strong.gguf", 576, 8, 1.0)
    server = start_server(tmp_path_factory.mktemp("home"), "demo", str(other), "--lora", str(strong),
                          "--idle-unload", str(IDLE_S))
    yield server
    stop_server(server)
    assert "Traceback" not in server.log()


def _loaded(client: ollama.Client) -> list[str]:
    return [m.model for m in client.ps().models]


def _answer(client: ollama.Client, model: str, tokens: int = 20) -> str:
    return client.chat(model=model, messages=ASK, options=GREEDY | {"num_predict": tokens}).message.content


def test_loads_swaps_and_unloads_when_idle(served: Served) -> None:
    client = ollama.Client(host=served.url, timeout=300)
    assert sorted(m.model for m in client.list().models) == ["demo", "other", "strong"]
    shown = client.show("strong")
    assert shown.details.parent_model == "demo" and "ADAPTER" in shown.modelfile
    assert _loaded(client) == []  # nothing until the first request
    base = _answer(client, "demo")
    assert "Paris" in base and _loaded(client) == ["demo"]
    adapted = _answer(client, "strong")
    assert adapted != base and _loaded(client) == ["strong"]
    assert _answer(client, "other") == base and _loaded(client) == ["other"]
    deadline = time.monotonic() + IDLE_S + 30  # bounded wait: a broken idle unload fails here
    while _loaded(client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _loaded(client) == []
    assert _answer(client, "demo") == base  # loaded again on the next request


def test_queued_requests_for_different_models_each_get_their_model(served: Served) -> None:
    client = ollama.Client(host=served.url, timeout=600)
    expected = {"demo": _answer(client, "demo", 6), "strong": _answer(client, "strong", 6)}
    assert expected["demo"] != expected["strong"]
    order = ["demo", "strong", "strong", "demo"]
    got: dict[int, str] = {}

    def ask(i: int, model: str) -> None:
        got[i] = _answer(client, model, 6)

    threads = [threading.Thread(target=ask, args=(i, m)) for i, m in enumerate(order)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert [got.get(i) for i in range(len(order))] == [expected[m] for m in order]


def _expires_in(client: ollama.Client) -> float:
    (model,) = client.ps().models
    return (model.expires_at - datetime.now(UTC)).total_seconds()


def _wait_unloaded(client: ollama.Client, within: float) -> None:
    deadline = time.monotonic() + within  # bounded: a model never unloaded fails here
    while _loaded(client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _loaded(client) == []


def test_a_requests_keep_alive_says_how_long_its_model_stays(served: Served) -> None:
    client = ollama.Client(host=served.url, timeout=300)
    for model in _loaded(client):  # ollama stop: whatever an earlier test left loaded goes
        assert client.generate(model=model, keep_alive=0).done_reason == "unload"
    assert _loaded(client) == []
    assert client.generate(model="other", keep_alive=-1).done_reason == "load"  # loaded ahead, kept
    assert _expires_in(client) > 10 * 365 * 86400
    time.sleep(IDLE_S + 1.5)  # past --idle-unload: kept all the same
    assert _loaded(client) == ["other"]
    client.chat(model="other", messages=ASK, options=GREEDY, keep_alive="1h30m")
    assert 5400 - 60 < _expires_in(client) <= 5400
    _answer(client, "other", 4)  # no keep_alive: back to the server's --idle-unload
    assert _expires_in(client) <= IDLE_S
    _wait_unloaded(client, IDLE_S + 30)
    client.chat(model="demo", messages=ASK, options=GREEDY, keep_alive=0)  # gone once answered
    _wait_unloaded(client, 5)
    client.generate(model="demo", prompt="Hi", options={"num_predict": 2}, keep_alive="5m")
    stopped = client.generate(model="demo", keep_alive=0)  # ollama stop
    assert stopped.done_reason == "unload" and _loaded(client) == []
    assert client.generate(model="strong", keep_alive="0s").done_reason == "unload"  # not loaded: nothing is
    assert _loaded(client) == []


def _context(client: ollama.Client) -> int | None:
    (model,) = client.ps().models
    return model.context_length


def test_num_ctx_loads_the_model_again_with_that_context(served: Served) -> None:
    client = ollama.Client(host=served.url, timeout=300)
    kept = {"keep_alive": -1}  # no idle unload between a request and its check

    def chat(**options: int) -> ollama.ChatResponse:
        return client.chat(model="demo", messages=ASK, options=GREEDY | options, **kept)

    base = chat()
    served_ctx = _context(client)  # the server's (--ctx, else the settings)
    assert served_ctx is not None and 1024 < served_ctx < 8192
    asked = chat(num_ctx=1024)
    assert _context(client) == 1024 and asked.load_duration > 0
    assert asked.message.content == base.message.content  # the same model, greedy: the same answer
    assert "num_ctx 1024" in client.show("demo").parameters
    assert chat(num_ctx=1024).load_duration == 0  # loaded so already
    assert chat().load_duration > 0 and _context(client) == served_ctx  # no num_ctx: at least the server's
    assert chat(num_ctx=8192).load_duration > 0
    assert chat().load_duration == 0 and _context(client) == 8192  # a larger context serves as well
    with pytest.raises(ollama.ResponseError) as err:
        chat(num_ctx=10 ** 12)
    # the client's error (it was a 503): the server's own context would load (a 503 stays for that: test_errors)
    assert err.value.status_code == 400 and "a context of 1000000000000 tokens needs about" in str(err.value)
    assert _context(client) == 8192  # the refused load left the loaded model as it was
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="demo", prompt="Hi", options={"num_ctx": 8})
    assert err.value.status_code == 400 and "options.num_ctx: must be a whole number at least 16, not 8" in str(
        err.value)
    assert client.generate(model="demo", options={"num_ctx": 512}, **kept).done_reason == "load"  # an empty request
    assert _context(client) == 512
    assert client.generate(model="demo", keep_alive=0).done_reason == "unload"
    logged = len(served.lines)
    _answer(client, "demo", 2)  # loaded again without num_ctx (and back to --idle-unload): the server's context
    assert _context(client) == served_ctx
    # The server's log says which requests waited for a load.
    assert served.wait_for_line(r"^POST /api/chat demo 200 \d+\+2 tokens \d+\.\d\ds \(loaded in \d+\.\d\ds\)$",
                                after=logged)
