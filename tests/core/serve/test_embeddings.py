"""Embeddings from ``tuillm serve demo`` through the official ``openai`` and ``ollama`` clients: vectors of the
model's width, finite and normalized, the same for the same text and different for another, in the inputs' order,
base64 the same floats; the context's bound; Ollama's load, unload and older route."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import ollama
import openai
import pytest

from tests.core.serve.conftest import Served

WIDTH = 576  # the demo's embedding length
TEXTS = ["The capital of France is Paris.", "Bananas are yellow.", "Paris is the capital of France."]
N_VOCAB = 49152  # the demo's vocabulary
MIXED = "input: must be a text, a list of texts, a list of token ids or a list of lists of token ids, all of one kind"


@pytest.fixture(scope="module")
def oai(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def oll(server: Served) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=300)


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (_norm(a) * _norm(b))


def test_openai_vectors(oai: openai.OpenAI) -> None:
    reply = oai.embeddings.create(model="demo", input=TEXTS, encoding_format="float")
    vectors = [d.embedding for d in reply.data]
    assert [d.index for d in reply.data] == [0, 1, 2] and reply.model == "demo"
    assert all(len(v) == WIDTH and all(math.isfinite(x) for x in v) for v in vectors)
    assert all(_norm(v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    assert _cos(vectors[0], vectors[2]) > _cos(vectors[0], vectors[1])  # the same fact, said again, is closer
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > len(TEXTS)
    again = oai.embeddings.create(model="demo", input=TEXTS[0], encoding_format="float").data[0].embedding
    assert again == pytest.approx(vectors[0], abs=1e-5)  # alone or in a batch: the same text, the same vector
    assert _cos(again, vectors[1]) < 0.999


def test_openai_batch_order_is_kept(oai: openai.OpenAI) -> None:
    forward = [d.embedding for d in oai.embeddings.create(model="demo", input=TEXTS, encoding_format="float").data]
    backward = [d.embedding for d in oai.embeddings.create(model="demo", input=TEXTS[::-1],
                                                           encoding_format="float").data]
    for a, b in zip(forward, backward[::-1], strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_openai_base64_is_the_same_floats(oai: openai.OpenAI, server: Served) -> None:
    floats = oai.embeddings.create(model="demo", input=TEXTS[1], encoding_format="float").data[0].embedding
    raw = httpx.post(f"{server.url}/v1/embeddings", json={"model": "demo", "input": TEXTS[1],
                                                          "encoding_format": "base64"}, timeout=300).json()
    data = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{WIDTH}f", data)) == floats  # float32, little-endian, exactly
    # the client asks for base64 when not told and decodes it itself
    assert oai.embeddings.create(model="demo", input=TEXTS[1]).data[0].embedding == floats


def test_openai_dimensions_shorten_and_renormalize(oai: openai.OpenAI) -> None:
    full = oai.embeddings.create(model="demo", input=TEXTS[0], encoding_format="float").data[0].embedding
    short = oai.embeddings.create(model="demo", input=TEXTS[0], dimensions=64, encoding_format="float").data[0]
    assert len(short.embedding) == 64 and _norm(short.embedding) == pytest.approx(1.0, abs=1e-5)
    assert _cos(short.embedding, full[:64]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("fields", "message"), [
    ({"input": ""}, "input 0: empty text has nothing to embed"),
    ({"input": []}, "input: an empty list has nothing to embed"),
    ({"input": ["a", 3]}, MIXED),
    ({"input": [[1, 2], "a"]}, MIXED),
    ({"input": [1, [2]]}, MIXED),
    ({"input": [[1, "2"]]}, MIXED),
    ({"input": [True, 2]}, MIXED),  # JSON true is no token id
    ({"input": [[1.0]]}, MIXED),
    ({"input": [[]]}, "input 0: an empty token array has nothing to embed"),
    ({"input": [[1], []]}, "input 1: an empty token array has nothing to embed"),
    ({"input": [[N_VOCAB]]}, f"input 0: token {N_VOCAB} is not in the model's vocabulary (0 to {N_VOCAB - 1})"),
    ({"input": [1, -1]}, f"input 0: token -1 is not in the model's vocabulary (0 to {N_VOCAB - 1})"),
    ({"input": [[1], [2, 10**30]]}, f"input 1: token {10**30} is not in the model's vocabulary (0 to "
                                    f"{N_VOCAB - 1})"),
    ({"input": ["a"] * 2049}, "input: at most 2048 texts per request, not 2049"),
    ({"input": [[1]] * 2049}, "input: at most 2048 token arrays per request, not 2049"),
    ({"input": [[1] * 600_000, [1] * 500_000]}, "input: at most 1048576 token ids per request"),
    ({"input": "a", "dimensions": 0}, f"dimensions: must be a whole number from 1 to {WIDTH} (the model's width), "
                                      "not 0"),
    ({"input": "a", "dimensions": WIDTH + 1}, f"dimensions: must be a whole number from 1 to {WIDTH} (the model's "
                                              f"width), not {WIDTH + 1}"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format: Input should be 'float' or 'base64'"),
])
def test_openai_bad_inputs_are_400(oai: openai.OpenAI, fields: dict, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="demo", **fields)
    assert err.value.body["message"] == message


def test_openai_an_input_past_the_context_is_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="demo", input="word " * 9000)  # past EMBED_MAX_CTX too
    assert err.value.code == "context_length_exceeded"
    assert err.value.body["message"].startswith("input 0: 9001 tokens, longer than the context (")


def _tokens(server: Served, text: str) -> list[int]:
    """``text``'s tokens as an embedding of the text takes them (BOS where the model wants it, special tokens' text
    as text)."""
    reply = httpx.post(f"{server.url}/tokenize", json={"model": "demo", "content": text, "add_special": True,
                                                       "parse_special": False}, timeout=60)
    return reply.json()["tokens"]


def test_openai_token_arrays_embed_as_their_text(oai: openai.OpenAI, server: Served) -> None:
    texts = oai.embeddings.create(model="demo", input=TEXTS, encoding_format="float")
    ids = [_tokens(server, text) for text in TEXTS]
    arrays = oai.embeddings.create(model="demo", input=ids, encoding_format="float")
    assert [d.index for d in arrays.data] == [0, 1, 2]
    for of_text, of_ids in zip(texts.data, arrays.data, strict=True):
        assert of_ids.embedding == pytest.approx(of_text.embedding, abs=1e-5)
    assert arrays.usage.prompt_tokens == arrays.usage.total_tokens == texts.usage.prompt_tokens == \
        sum(map(len, ids))
    one = oai.embeddings.create(model="demo", input=ids[1])  # one list of ids: one input (base64, as by default)
    assert len(one.data) == 1 and one.usage.prompt_tokens == len(ids[1])
    assert one.data[0].embedding == pytest.approx(texts.data[1].embedding, abs=1e-5)


def test_openai_a_token_array_past_the_context_is_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="demo", input=[[1, 2], [7] * 9001])  # past EMBED_MAX_CTX too
    assert err.value.code == "context_length_exceeded"
    assert err.value.body["message"].startswith("input 1: 9001 tokens, longer than the context (")


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2, 3]]])
def test_ollama_embed_takes_text_only(server: Served, value: list) -> None:
    reply = httpx.post(f"{server.url}/api/embed", json={"model": "demo", "input": value}, timeout=60)
    assert reply.status_code == 400
    assert reply.json() == {"error": "input: token ids are OpenAI's (/v1/embeddings); Ollama's embeddings take text"}


def test_ollama_embed(oll: ollama.Client, oai: openai.OpenAI) -> None:
    reply = oll.embed(model="demo", input=TEXTS)
    assert len(reply.embeddings) == 3 and all(len(v) == WIDTH for v in reply.embeddings)
    assert all(_norm(v) == pytest.approx(1.0, abs=1e-5) for v in reply.embeddings)
    assert reply.prompt_eval_count > len(TEXTS) and reply.total_duration > 0
    same = oai.embeddings.create(model="demo", input=TEXTS, encoding_format="float").data
    for mine, theirs in zip(reply.embeddings, same, strict=True):
        assert mine == pytest.approx(theirs.embedding, abs=1e-5)
    one = oll.embed(model="demo:latest", input=TEXTS[1], dimensions=32).embeddings
    assert len(one) == 1 and len(one[0]) == 32 and _norm(one[0]) == pytest.approx(1.0, abs=1e-5)


def test_ollama_truncates_at_the_context_asked_unless_told_not_to(oll: ollama.Client, oai: openai.OpenAI) -> None:
    long, small = " ".join(["word"] * 100), {"num_ctx": 64}  # a small context: the cut input is quick to embed
    cut = oll.embed(model="demo", input=long, options=small)
    assert len(cut.embeddings[0]) == WIDTH and cut.prompt_eval_count == 64
    with pytest.raises(ollama.ResponseError) as err:
        oll.embed(model="demo", input=long, truncate=False, options=small)
    assert err.value.status_code == 400 and err.value.error == "input 0: 100 tokens, longer than the context (64)"
    # a request that asks for no context gets the server's again, not the small one loaded last
    assert oai.embeddings.create(model="demo", input=long).usage.prompt_tokens == 100


def test_ollama_older_route_gives_the_raw_vector(oll: ollama.Client) -> None:
    raw = oll.embeddings(model="demo", prompt=TEXTS[0]).embedding
    assert len(raw) == WIDTH and _norm(raw) != pytest.approx(1.0, abs=1e-3)  # not normalized, as Ollama's
    normalized = oll.embed(model="demo", input=TEXTS[0]).embeddings[0]
    assert [x / _norm(raw) for x in raw] == pytest.approx(normalized, abs=1e-5)
    assert oll.embeddings(model="demo", prompt="").embedding == []


def test_ollama_load_and_unload_for_embeddings(oll: ollama.Client, server: Served) -> None:
    assert oll.embed(model="demo", input=[]).embeddings == []  # loads it
    oll.generate(model="demo", keep_alive=0)  # `ollama stop`: the chat model and the embedding context go
    assert oll.ps().models == []
    oll.embed(model="demo", input=TEXTS[0], keep_alive="10m")
    listed = oll.ps().models
    assert [m.model for m in listed] == ["demo"]  # the embedding context, the chat model not loaded
    unloaded = httpx.post(f"{server.url}/api/embed", json={"model": "demo", "keep_alive": 0}, timeout=60).json()
    assert unloaded == {"model": "demo", "embeddings": [], "load_duration": 0}
    assert oll.ps().models == []


def test_an_embedding_context_that_does_not_fit_is_refused_where_the_chat_fits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedding context decodes an input in one micro-batch, every token's logits kept: at the demo's 8,192
    tokens that is ~3 GB the chat's estimate (~0.5 GB at the same context) did not count, and it was loaded."""
    from fastapi.testclient import TestClient

    from tuillm.core.models import hardware
    from tuillm.core.serve.app import create_app
    from tuillm.core.serve.models import ModelHost, served_models
    from tuillm.core.settings import Config

    monkeypatch.setattr(hardware, "available_ram", lambda: 1536 << 20)
    config = Config()
    host = ModelHost(served_models(["demo"], [], config), config, n_ctx=8192)
    try:
        with TestClient(create_app(host)) as client:
            refused = client.post("/v1/embeddings", json={"model": "demo", "input": TEXTS[0]})
            assert refused.status_code == 503, refused.text
            assert "needs about" in refused.json()["error"]["message"]
            chat = client.post("/v1/chat/completions", json={"model": "demo", "max_tokens": 2,
                                                             "messages": [{"role": "user", "content": "Hi"}]})
            assert chat.status_code == 200, chat.text
    finally:
        host.close()
