"""``POST /v1/completions``: plain prompts (text, or the token ids a client tokenized them into) continued as is.

Several prompts in one request are answered one after the other, each in its own choice (lm-eval sends its batch
that way); a streamed request takes one. ``echo`` puts the prompt before the reply; with ``logprobs`` each prompt
token is scored as well (what lm-eval's loglikelihood asks for), and with ``max_tokens: 0`` the scored prompt is
the whole answer, as OpenAI's older models gave it. Streamed, the echoed prompt is the first chunk. A prompt of
token ids echoes as their text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from tuillm.core.chat.plain import PlainPrompt
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import Sampling
from tuillm.core.serve import openai
from tuillm.core.serve.api import Api, parse, sampling_for
from tuillm.core.serve.framing import SSE_DONE, Splice, sse
from tuillm.core.serve.guard import clock
from tuillm.core.serve.runner import Finished, ReplyStream


@dataclass(frozen=True)
class Echo:
    """An echoed prompt: its text, its token count and (when asked) its logprobs."""

    text: str
    tokens: int
    logprobs: dict[str, Any] | None


@dataclass(frozen=True)
class _Ask:
    """One request's fields, read once."""

    model: str
    sampling: Sampling
    stops: list[str]
    echo: bool
    prompt_only: bool
    include_usage: bool  # stream_options.include_usage: a streamed answer ends with its usage, in a chunk of its own


async def complete(api: Api, request: Request) -> Any:
    t0 = clock()
    body = await parse(request, openai.CompletionRequest)
    ask = _Ask(body.model, sampling_for(api.host, body.sampling()), body.stops(), body.echo, body.prompt_only(),
               body.include_usage)
    prompts = body.plains()
    if not body.stream:
        return await _whole(api, request, t0, ask, prompts)
    if len(prompts) > 1:
        raise TuillmError("stream: a streamed completion takes one prompt (send the others in requests of their own)")
    return await _streamed(api, request, t0, ask, prompts[0])


async def _whole(api: Api, request: Request, t0: float, ask: _Ask, prompts: list[PlainPrompt]) -> Any:
    """Each prompt's completion as its choice, in order; a client that leaves stops the one running and the rest."""
    name = api.host.find(ask.model).name
    choices, parts, left = [], [], False
    for index, prompt in enumerate(prompts):
        echo = await _echo(api, request, ask, prompt) if ask.echo else None
        if echo is not None and ask.prompt_only:
            done = _scored(echo, t0)
            choices.append(openai.completion_choice(echo.text, done, echo.logprobs, index))
        else:
            _, stream = await api.start(request, ask.model, prompt, ask.sampling, ask.stops)
            done, left = await api.answer(request, stream), stream.left
            echoed = echo.text if echo else ""
            entries = None if done.logprobs is None else \
                openai.completion_logprobs(done.logprobs, openai.TextOffsets(len(echoed)))
            choices.append(openai.completion_choice(echoed + done.text, done,
                                                    openai.joined(echo.logprobs if echo else None, entries), index))
        parts.append(done)
        if left:
            break
    total = _total(parts)
    api.record_whole(request, t0, name, total, left)
    return openai.completions(openai.new_id("cmpl"), name, choices, total)


async def _streamed(api: Api, request: Request, t0: float, ask: _Ask, prompt: PlainPrompt) -> Any:
    echo = await _echo(api, request, ask, prompt) if ask.echo else None
    if echo is not None and ask.prompt_only:
        return _prompt_only_streamed(api, request, t0, ask, echo)
    model, stream = await api.start(request, ask.model, prompt, ask.sampling, ask.stops)
    rid, name, created = openai.new_id("cmpl"), model.name, int(time.time())
    texts = _chunks(rid, name, created, stream, len(echo.text) if echo else 0, ask.include_usage)
    # The echoed prompt is the first chunk written, before the reply's first text or its end.
    head = [sse(openai.completion_chunk(rid, name, echo.text, created, logprobs=echo.logprobs,
                                        include_usage=ask.include_usage))] if echo else []

    def chunk(batch: list[str]) -> str:
        return (head.pop() if head else "") + texts(batch)

    def end(done: Finished) -> str:
        return (head.pop() if head else "") + _end(rid, name, created, done, ask.include_usage)

    return api.streamed(request, t0, name, stream, "text/event-stream", chunk, end)


async def _echo(api: Api, request: Request, ask: _Ask, prompt: PlainPrompt) -> Echo:
    """The prompt scored by the model (it stays in the cache for the reply): its text, count and logprobs."""
    top = ask.sampling.logprobs
    if top is None and prompt.ids is None and not ask.prompt_only:
        return Echo(prompt.text, 0, None)  # the text as given: nothing to score (the count is the reply's)
    score = await api.score(request, ask.model, prompt, top or 0)
    pieces = [score.first, *(entry.piece for entry in score.entries)]
    text = prompt.text if prompt.ids is None else b"".join(pieces).decode("utf-8", errors="replace")
    return Echo(text, len(pieces), None if top is None else openai.prompt_logprobs(score))


def _scored(echo: Echo, t0: float) -> Finished:
    """How a prompt answered alone (``max_tokens: 0``) ended: its tokens counted, none generated."""
    return Finished(text="", prompt_tokens=echo.tokens, completion_tokens=0, finish_reason="length",
                    total_s=clock() - t0, load_s=0.0, ttft_s=0.0)


def _total(parts: list[Finished]) -> Finished:
    """The usage and timings of several prompts' completions as one."""
    if len(parts) == 1:
        return parts[0]
    return Finished(text="", prompt_tokens=sum(p.prompt_tokens for p in parts),
                    completion_tokens=sum(p.completion_tokens for p in parts), finish_reason=parts[-1].finish_reason,
                    total_s=sum(p.total_s for p in parts), load_s=sum(p.load_s for p in parts),
                    ttft_s=parts[0].ttft_s)


def _prompt_only_streamed(api: Api, request: Request, t0: float, ask: _Ask, echo: Echo) -> StreamingResponse:
    name = api.host.find(ask.model).name
    done = _scored(echo, t0)
    api.record_whole(request, t0, name, done, False)
    rid, created = openai.new_id("cmpl"), int(time.time())
    events = [sse(openai.completion_chunk(rid, name, echo.text, created, logprobs=echo.logprobs,
                                          include_usage=ask.include_usage)),
              _end(rid, name, created, done, ask.include_usage)]
    return StreamingResponse(iter(events), media_type="text/event-stream")


def _end(rid: str, name: str, created: int, done: Finished, include_usage: bool) -> str:
    """A streamed completion's last events: its finish reason, its usage when asked for, [DONE]."""
    usage = sse(openai.usage_chunk(rid, name, "text_completion", created, done)) if include_usage else ""
    return sse(openai.completion_chunk(rid, name, "", created, done, include_usage=include_usage)) + usage + SSE_DONE


def _chunks(rid: str, name: str, created: int, stream: ReplyStream, offset: int,
            include_usage: bool) -> Callable[[list[str]], str]:
    """A streamed completion's chunk for each batch (with logprobs, built whole with its tokens' entries);
    ``offset``: where the reply starts in the completion's text (after an echoed prompt)."""
    chunk = Splice(lambda t: sse(openai.completion_chunk(rid, name, t, created, include_usage=include_usage)))
    offsets = openai.TextOffsets(offset)

    def texts(batch: list[str]) -> str:
        if not stream.logprobs_asked:
            return chunk.many(batch)
        entries = openai.completion_logprobs(stream.take_logprobs(), offsets)
        return sse(openai.completion_chunk(rid, name, batch[0], created, logprobs=entries,
                                           include_usage=include_usage))

    return texts
