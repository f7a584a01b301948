"""llama.cpp server's /health, /tokenize and /detokenize against the app in-process (the demo's real vocabulary):
its shapes, the model chosen, and every field checked before llama.cpp sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuillm.core.errors import crash_log_path
from tuillm.core.serve.app import create_app
from tuillm.core.serve.models import ModelHost, served_models
from tuillm.core.serve.tokens import MAX_TEXT_CHARS, MAX_TOKENS
from tuillm.core.settings import Config

KEY = "k3y"
AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [19556, 905]  # "Hello world" in the demo's vocabulary
N_VOCAB = 49152


def bos_variant(demo: Path, out: Path) -> Path:
    """The demo's metadata with BOS added to a tokenized text, and one dummy tensor: a vocabulary is all /tokenize
    reads (llama.cpp loads no tensor for it)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(demo)
    writer = gguf.GGUFWriter(out, arch=reader.get_field(gguf.Keys.General.ARCHITECTURE).contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.Tokenizer.ADD_BOS:
            writer.add_bool(field.name, True)
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    writer.add_tensor("token_embd.weight", np.zeros(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demo_gguf: Path) -> Iterator[TestClient]:
    variant = bos_variant(demo_gguf, tmp_path_factory.mktemp("gguf") / "bos.gguf")
    config = Config()
    host = ModelHost(served_models(["demo", str(variant)], [], config), config, n_ctx=256)
    with TestClient(create_app(host, api_key=KEY)) as test_client:
        yield test_client
    host.close()


def test_health_answers_without_the_key(client: TestClient) -> None:
    # as llama.cpp server's: a load balancer's probe has no key
    for path in ("/health", "/v1/health"):
        reply = client.get(path)
        assert (reply.status_code, reply.json()) == (200, {"status": "ok"})
    assert client.post("/tokenize", json={"content": "Hi"}).status_code == 401


def test_tokenize_and_detokenize_round_trip(client: TestClient) -> None:
    tokens = client.post("/tokenize", json={"content": "Hello world"}, headers=AUTH).json()
    assert tokens == {"tokens": HELLO}
    assert client.post("/detokenize", json={"tokens": HELLO}, headers=AUTH).json() == {"content": "Hello world"}
    assert client.post("/tokenize", json={}, headers=AUTH).json() == {"tokens": []}  # llama.cpp server's answer
    assert client.post("/detokenize", json={}, headers=AUTH).json() == {"content": ""}


def test_special_tokens_are_parsed_unless_told_not_to(client: TestClient) -> None:
    def tokens(**fields: object) -> list:
        return client.post("/tokenize", json={"content": "<|im_start|>Hi", **fields}, headers=AUTH).json()["tokens"]

    assert tokens()[0] == 1 and len(tokens()) == 2  # <|im_start|> is token 1
    assert 1 not in tokens(parse_special=False) and len(tokens(parse_special=False)) > 2
    assert client.post("/detokenize", json={"tokens": tokens()}, headers=AUTH).json() == {"content": "<|im_start|>Hi"}


def test_with_pieces_gives_each_tokens_text(client: TestClient) -> None:
    reply = client.post("/tokenize", json={"content": "Hello world", "with_pieces": True}, headers=AUTH).json()
    assert reply == {"tokens": [{"id": HELLO[0], "piece": "Hello"}, {"id": HELLO[1], "piece": " world"}]}
    emoji = client.post("/tokenize", json={"content": "🦙", "with_pieces": True}, headers=AUTH).json()["tokens"]
    # a token holding part of a character gives its bytes, as llama.cpp server's does
    pieces = [p["piece"] for p in emoji]
    assert all(isinstance(p, str | list) for p in pieces) and bytes(
        b for p in pieces for b in (p.encode() if isinstance(p, str) else p)) == "🦙".encode()


def test_add_special_and_the_model_named(client: TestClient) -> None:
    # The demo adds no BOS; its variant does: add_special follows the model named (the default: the first served).
    def tokens(**fields: object) -> list:
        return client.post("/tokenize", json={"content": "Hello world", **fields}, headers=AUTH).json()["tokens"]

    assert tokens(add_special=True) == HELLO
    assert tokens(model="bos", add_special=True) == [1, *HELLO]
    assert tokens(model="bos") == HELLO
    missing = client.post("/tokenize", json={"content": "Hi", "model": "nope"}, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": 404, "message": "model 'nope' not found; served here: bos, demo",
                                        "type": "not_found_error"}}


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/detokenize", {"tokens": [19556, N_VOCAB]}, f"tokens: {N_VOCAB} is not in the model's vocabulary (0 to "
                                                   f"{N_VOCAB - 1})"),
    ("/detokenize", {"tokens": [-1]}, f"tokens: -1 is not in the model's vocabulary (0 to {N_VOCAB - 1})"),
    ("/detokenize", {"tokens": [10 ** 30]}, f"tokens: {10 ** 30} is not in the model's vocabulary"),
    ("/detokenize", {"tokens": [True]}, "tokens.0: Input should be a valid integer"),
    ("/detokenize", {"tokens": [1.0]}, "tokens.0: Input should be a valid integer"),
    ("/detokenize", {"tokens": "1 2"}, "tokens: Input should be a valid list"),
    ("/detokenize", {"tokens": [0] * (MAX_TOKENS + 1)}, "tokens: List should have at most"),
    ("/tokenize", {"content": 3}, "content: Input should be a valid string"),
    ("/tokenize", {"content": "x" * (MAX_TEXT_CHARS + 1)}, "content: String should have at most"),
    ("/tokenize", {"content": "Hi", "add_special": 1}, "add_special: Input should be a valid boolean"),
    ("/tokenize", {"content": "Hi", "model": 7}, "model: Input should be a valid string"),
    ("/tokenize", b"{", "malformed JSON in the request body"),
])
def test_bad_fields_are_400_in_llama_servers_shape(client: TestClient, path: str, body: object,
                                                    message: str) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = client.post(path, content=data, headers=AUTH)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error" and error["message"].startswith(message)


ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={
    "content": st.one_of(st.text(max_size=40), ANY_JSON), "tokens": st.one_of(
        st.lists(st.integers(-2, N_VOCAB + 2), max_size=8), st.lists(st.integers(), max_size=3), ANY_JSON),
    "add_special": ANY_JSON, "parse_special": st.booleans(), "with_pieces": st.booleans(),
    "model": st.sampled_from(["demo", "bos", "nope", 3, None])}), path=st.sampled_from(["/tokenize", "/detokenize"]))
def test_any_body_is_an_answer_or_a_4xx_never_a_crash(client: TestClient, body: dict, path: str) -> None:
    reply = client.post(path, content=json.dumps(body).encode(), headers=AUTH)
    assert reply.status_code in (200, 400, 404), reply.text[:300]
    if reply.status_code != 200:
        assert reply.json()["error"]["message"]
    assert not crash_log_path().exists()
