"""``POST /v1/completions``: a plain prompt (text, or the token ids a client tokenized it into) continued as is.

``echo`` puts the prompt before the reply; with ``logprobs`` each prompt token is scored as well (what lm-eval's
loglikelihood asks for), and with ``max_tokens: 0`` the scored prompt is the whole answer, as OpenAI's older
models gave it. Streamed, the echoed prompt is the first chunk. A prompt of token ids echoes as their text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from tuillm.core.chat.plain import PlainPrompt
from tuillm.core.llama.options import Sampling
from tuillm.core.serve import openai
from tuillm.core.serve.api import Api, parse, sampling_for
from tuillm.core.serve.framing import Splice, sse
from tuillm.core.serve.guard import clock
from tuillm.core.serve.models import ModelHost
from tuillm.core.serve.runner import Finished, ReplyStream

DONE = "data: [DONE]\n\n"


@dataclass(frozen=True)
class Echo:
    """An echoed prompt: its text, its token count and (when asked) its logprobs."""

    text: str
    tokens: int
    logprobs: dict[str, Any] | None


async def complete(api: Api, request: Request) -> Any:
    t0 = clock()
    body = await parse(request, openai.CompletionRequest)
    sampling = sampling_for(api.host, body.sampling())
    prompt = body.plain()
    echo = await _echo(api.host, body.model, prompt, sampling) if body.echo else None
    if echo is not None and body.prompt_only():
        return _prompt_only(api, request, t0, body, echo)
    model, stream = await api.start(request, body.model, prompt, sampling, body.stops())
    rid, name, created = openai.new_id("cmpl"), model.name, int(time.time())
    echoed = echo.text if echo else ""
    if not body.stream:
        done = await api.whole(request, t0, name, stream)
        entries = None if done.logprobs is None else \
            openai.completion_logprobs(done.logprobs, openai.TextOffsets(len(echoed)))
        return openai.completion(rid, name, echoed + done.text, done,
                                 logprobs=openai.joined(echo.logprobs if echo else None, entries))
    texts = _chunks(rid, name, created, stream, len(echoed))
    # The echoed prompt is the first chunk written, before the reply's first text or its end.
    head = [sse(openai.completion(rid, name, echo.text, created=created, logprobs=echo.logprobs))] if echo else []

    def chunk(batch: list[str]) -> str:
        return (head.pop() if head else "") + texts(batch)

    def end(done: Finished) -> str:
        return (head.pop() if head else "") + sse(openai.completion(rid, name, "", done, created)) + DONE

    return api.streamed(request, t0, name, stream, "text/event-stream", chunk, end)


async def _echo(host: ModelHost, name: str, prompt: PlainPrompt, sampling: Sampling) -> Echo:
    """The prompt scored by the model (it stays in the cache for the reply): its text, count and logprobs."""
    score = await host.score(host.find(name), prompt, sampling.logprobs or 0)
    pieces = [score.first, *(entry.piece for entry in score.entries)]
    text = prompt.text if prompt.ids is None else b"".join(pieces).decode("utf-8", errors="replace")
    return Echo(text, len(pieces), None if sampling.logprobs is None else openai.prompt_logprobs(score))


def _prompt_only(api: Api, request: Request, t0: float, body: openai.CompletionRequest, echo: Echo) -> Any:
    """The answer to ``echo`` with ``max_tokens: 0``: the prompt and its logprobs, no reply."""
    name = api.host.find(body.model).name
    done = Finished(text="", prompt_tokens=echo.tokens, completion_tokens=0, finish_reason="length",
                    total_s=clock() - t0, load_s=0.0, ttft_s=0.0)
    api.record(request, t0, name, done)
    rid, created = openai.new_id("cmpl"), int(time.time())
    if not body.stream:
        return openai.completion(rid, name, echo.text, done, created, echo.logprobs)
    events = [sse(openai.completion(rid, name, echo.text, created=created, logprobs=echo.logprobs)),
              sse(openai.completion(rid, name, "", done, created)) + DONE]
    return StreamingResponse(iter(events), media_type="text/event-stream")


def _chunks(rid: str, name: str, created: int, stream: ReplyStream, offset: int) -> Callable[[list[str]], str]:
    """A streamed completion's chunk for each batch (with logprobs, built whole with its tokens' entries);
    ``offset``: where the reply starts in the completion's text (after an echoed prompt)."""
    chunk = Splice(lambda t: sse(openai.completion(rid, name, t, created=created)))
    offsets = openai.TextOffsets(offset)

    def texts(batch: list[str]) -> str:
        if not stream.logprobs_asked:
            return chunk.many(batch)
        entries = openai.completion_logprobs(stream.take_logprobs(), offsets)
        return sse(openai.completion(rid, name, batch[0], created=created, logprobs=entries))

    return texts
