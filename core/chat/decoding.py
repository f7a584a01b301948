"""A reply's decoding: the model's tokens turned into text events until an end token, the budget, the context's end
or a stop. Runs on the chat engine's worker thread (``core.chat.engine``)."""

from __future__ import annotations

import codecs
import contextlib
import time
from collections.abc import Generator
from dataclasses import dataclass, field

from tuillm.core.chat.events import ChatEmit, Token
from tuillm.core.llama.abort import StopFlag
from tuillm.core.llama.model import LlamaModel
from tuillm.core.llama.options import Sampling


@dataclass
class Decoded:
    """What one reply's decoding produced."""

    pieces: list[str] = field(default_factory=list)
    generated: int = 0
    finish: str = "stop"
    t_first: float = 0.0
    t_last: float = 0.0


def decode_reply(model: LlamaModel, n_ctx: int, tokens: Generator[int, None, None], sampling: Sampling, budget: int,
                 stop: StopFlag, emit: ChatEmit) -> Decoded:
    """Emits the reply text by token (a character split across tokens comes whole with its last one) from the
    model's ``tokens`` (``LlamaModel.generate``) until an end token, ``budget`` tokens, the context's end
    (``n_ctx``) or a stop."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = Decoded()
    with contextlib.closing(tokens) as generated:
        for token in generated:
            if stop.is_set():
                out.finish = "cancelled"
                break
            if model.is_eog(token):
                out.finish = "stop"
                break
            out.generated += 1
            out.t_last = time.perf_counter()
            if out.generated == 1:
                out.t_first = out.t_last
            text = decoder.decode(model.piece(token))
            out.pieces.append(text)
            top = sampling.logprobs
            emit(Token(text, None if top is None else model.logprob(token, top)))
            if out.generated >= budget or model.n_tokens >= n_ctx:
                out.finish = "length"
                break
        else:
            # The generator ends by itself only when a stop aborted the prompt's evaluation.
            out.finish = "cancelled" if stop.is_set() else "stop"
    tail = decoder.decode(b"", final=True)
    if tail:
        out.pieces.append(tail)
        emit(Token(tail))
    return out
