"""Fitting a conversation into the context: the oldest turns are left out first, never the system prompt."""

from __future__ import annotations

from collections.abc import Callable


def fit_messages(messages: list[dict[str, str]], count: Callable[[list[dict[str, str]]], list[int]], n_ctx: int,
                 max_tokens: int) -> tuple[list[dict[str, str]], list[int], int]:
    """Drop the oldest turns (never a leading system prompt) until prompt + reply budget fit in ``n_ctx``.

    ``count(messages) -> tokens``. Returns the kept messages, their prompt tokens and how many were dropped.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    rest = messages[len(system):]
    dropped = 0
    while True:
        tokens = count(system + rest)
        if len(tokens) + max_tokens <= n_ctx or len(rest) <= 1:
            return system + rest, tokens, dropped
        # A turn is a user message and the replies that follow it, up to the next user message.
        cut = 1
        while cut < len(rest) - 1 and rest[cut]["role"] != "user":
            cut += 1
        rest = rest[cut:]
        dropped += cut
