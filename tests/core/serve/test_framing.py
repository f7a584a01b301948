"""Streamed lines built by splicing the text into a line serialised once are the bytes ``json.dumps`` writes; the
engine's pieces reach the event loop in batches when the loop falls behind, none lost, in order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tuillm.core.llama.options import Sampling
from tuillm.core.serve import ollama, openai
from tuillm.core.serve.framing import Splice, ndjson, sse
from tuillm.core.serve.models import ModelHost, served_models
from tuillm.core.serve.runner import ReplyStream
from tuillm.core.settings import load_config

TEXTS = ["Paris", "", " ", '"quoted"', "back\\slash", "line\nbreak\ttab\r", "\x00\x1f\x7f", "é ü ß 中文 🗼",
         "</script>", "\u2028\u2029", "data: [DONE]\n\n", "{\"a\": 1}"]


@pytest.mark.parametrize("text", TEXTS)
def test_spliced_sse_is_what_json_dumps_writes(text: str) -> None:
    def line(t: str) -> str:
        return sse(openai.chat_chunk("chatcmpl-1", "demo", {"content": t}, created=1700000000))

    assert Splice(line)(text) == line(text)
    assert json.loads(Splice(line)(text).removeprefix("data: "))["choices"][0]["delta"]["content"] == text


def test_many_lines_in_one_write() -> None:
    def line(t: str) -> str:
        return ndjson(ollama.generate_line("demo", t))

    splice = Splice(line)
    written = splice.many(TEXTS)
    assert written == "".join(splice(t) for t in TEXTS)
    assert [json.loads(row)["response"] for row in written.split("\n")[:-1]] == TEXTS  # one line each
    assert splice.many([]) == ""


def test_a_line_without_its_text_as_one_json_string_is_refused() -> None:
    with pytest.raises(ValueError, match="one JSON string"):
        Splice(lambda t: sse({"twice": [t, t]}))
    with pytest.raises(ValueError, match="one JSON string"):
        Splice(lambda t: sse({"length": len(t)}))


def test_a_loop_that_falls_behind_takes_the_pieces_in_one_batch(demo_gguf: Path) -> None:
    """The loop is kept busy (blocked) until the reply is done: every piece then comes in one batch, and the
    batches of a loop that keeps up cover the same text in the same order."""
    config = load_config()
    models = served_models(["demo"], [], config)
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    greedy = Sampling(temperature=0.0, max_tokens=24)

    async def reply(behind: bool) -> tuple[list[list[str]], str]:
        stream = ReplyStream()
        await stream.start(host, models["demo"], ask, greedy)
        assert stream.future is not None
        if behind:
            stream.future.result(timeout=600)  # blocks the loop: bounded, so a broken engine fails here
        batches = [batch async for batch in stream.batches()]
        assert stream.finished is not None
        return batches, stream.finished.text

    async def both() -> tuple[tuple[list[list[str]], str], tuple[list[list[str]], str]]:
        return await reply(behind=True), await reply(behind=False)

    host = ModelHost(models, config, n_ctx=512)
    try:
        (late, late_text), (live, live_text) = asyncio.run(both())
    finally:
        host.close()
    assert len(late) == 1 and len(late[0]) > 3  # token by token from the engine, taken in one turn
    assert "".join(late[0]) == late_text == live_text == "".join(p for batch in live for p in batch)
    assert "Paris" in late_text
