"""Streamed lines on the wire: SSE events (OpenAI) and NDJSON lines (Ollama), built cheaply per token.

A streamed reply is one small JSON object per token in which only the text changes (id, model, ``created`` are
the stream's). ``Splice`` serialises that object once around a marker and then builds each line by putting the
JSON-escaped text between the two halves: the same bytes ``json.dumps`` would write, at a fraction of its cost,
on the event loop that also feeds the decode thread (they share the GIL and, on a small machine, the cores).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring  # what json.dumps(str, ensure_ascii=False) writes for a string
from typing import Any

_MARK = "\x00tuillm-text\x00"  # cannot be a model's name or a request id: control characters are escaped
_MARK_JSON = encode_basestring(_MARK)


SSE_DONE = "data: [DONE]\n\n"  # an OpenAI stream's last event


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def ndjson(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


class Splice:
    """``line(text)`` for many texts, from the one serialised line around a marker."""

    def __init__(self, line: Callable[[str], str]) -> None:
        whole = line(_MARK)
        if whole.count(_MARK_JSON) != 1:  # the marker is where the text goes, and only there
            raise ValueError("the line does not hold its text as one JSON string")
        self.head, _, self.tail = whole.partition(_MARK_JSON)

    def __call__(self, text: str) -> str:
        return self.head + encode_basestring(text) + self.tail

    def many(self, texts: Sequence[str]) -> str:
        """Each text's line, one after the other (several events in one write)."""
        head, tail = self.head, self.tail
        return "".join([head + encode_basestring(t) + tail for t in texts])
