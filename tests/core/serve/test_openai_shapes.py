"""OpenAI shapes without a model: a completion request's prompt, and completions' logprobs of tokens that split a
character (their names and text offsets)."""

from __future__ import annotations

import pytest

from tuillm.core.chat.plain import PlainPrompt
from tuillm.core.errors import TuillmError
from tuillm.core.llama.model import PromptScore, TokenLogprob
from tuillm.core.serve import openai


def _request(prompt: object, **fields: object) -> openai.CompletionRequest:
    return openai.CompletionRequest.model_validate({"model": "demo", "prompt": prompt, **fields})


@pytest.mark.parametrize(("prompt", "plains"), [
    ("Hi", [PlainPrompt("Hi")]),
    (["Hi"], [PlainPrompt("Hi")]),
    ([1, 2, 3], [PlainPrompt(ids=(1, 2, 3))]),
    ([[1, 2, 3]], [PlainPrompt(ids=(1, 2, 3))]),
    ([], [PlainPrompt(ids=())]),  # the engine says it is empty, as it does of ""
    ([0], [PlainPrompt(ids=(0,))]),
    (["a", "b"], [PlainPrompt("a"), PlainPrompt("b")]),
    ([[1], [2, 3], []], [PlainPrompt(ids=(1,)), PlainPrompt(ids=(2, 3)), PlainPrompt(ids=())]),
])
def test_prompts_are_text_or_token_ids(prompt: object, plains: list[PlainPrompt]) -> None:
    assert _request(prompt).plains() == plains


@pytest.mark.parametrize(("prompt", "message"), [
    ([-1], "token ids"),
    ([True, 2], "token ids"),  # JSON true is no token id
    ([1.0], "token ids"),
    ([[1, "a"]], "token ids"),
    ([["a"]], "token ids"),
    ([[[1]]], "token ids"),
    ([{"text": "a"}], "token ids"),
    (["a"] * (openai.MAX_PROMPTS + 1), f"at most {openai.MAX_PROMPTS} prompts per request, not "
                                       f"{openai.MAX_PROMPTS + 1}"),
])
def test_a_prompt_of_anything_else_is_refused_in_one_line(prompt: object, message: str) -> None:
    with pytest.raises(TuillmError, match=message):
        _request(prompt).plains()


def test_echo_with_no_tokens_asks_for_the_prompt_alone() -> None:
    assert _request("Hi", echo=True, max_tokens=0).prompt_only()
    assert not _request("Hi", max_tokens=0).prompt_only()  # no echo: max_tokens 0 is refused by its bounds
    assert _request("Hi", echo=True, max_tokens=0).sampling()["max_tokens"] is None


def _entry(piece: bytes, *top: bytes) -> TokenLogprob:
    return TokenLogprob(piece, -1.0, tuple((p, -1.0 - i) for i, p in enumerate(top)))


def test_pieces_of_a_character_are_named_by_their_bytes_and_start_where_it_does() -> None:
    # "a 🦙b": the llama's four bytes come in three tokens, as the demo's tokenizer splits it.
    pieces = [b"a", b" \xf0\x9f", b"\xa6", b"\x99", b"b"]
    text = b"".join(pieces).decode()
    lp = openai.completion_logprobs([_entry(p, p, b"\xa7", b"\xa8") for p in pieces], openai.TextOffsets())
    assert lp["tokens"] == ["a", "bytes: \\xf0\\x9f", "bytes:\\xa6", "bytes:\\x99", "b"]
    assert lp["text_offset"] == [0, 1, 2, 2, 3]
    assert [text[i] for i in lp["text_offset"]] == ["a", " ", "🦙", "🦙", "b"]
    # Alternatives that are parts of characters stay apart (all three were "\ufffd", one key, before).
    assert [len(top) for top in lp["top_logprobs"]] == [3, 3, 3, 3, 3]


def test_offsets_go_on_across_streamed_chunks_and_after_an_echoed_prompt() -> None:
    offsets = openai.TextOffsets(5)  # the reply comes after a 5-character echoed prompt
    first = openai.completion_logprobs([_entry(b"x"), _entry(b"\xe9\xbe")], offsets)
    second = openai.completion_logprobs([_entry(b"\x98"), _entry(b"!")], offsets)  # the rest of "龘", then "!"
    assert first["text_offset"] + second["text_offset"] == [5, 6, 6, 7]


def test_an_echoed_prompt_starts_with_its_unscored_first_token() -> None:
    score = PromptScore(b"\xf0\x9f", (_entry(b"\xa6\x99", b"\xa6\x99"), _entry(b" ok", b" ok")))
    lp = openai.prompt_logprobs(score)
    assert lp["tokens"] == ["bytes:\\xf0\\x9f", "bytes:\\xa6\\x99", " ok"]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["text_offset"] == [0, 0, 1]


@pytest.mark.parametrize(("fields", "message"), [
    ({"suffix": "}"}, "suffix"),
    ({"best_of": 3}, "best_of: only 1 candidate"),
])
def test_what_would_change_the_answer_and_is_not_done_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(TuillmError, match=message):
        _request("Hi", **fields).sampling()
    assert _request("Hi", suffix="", best_of=1).sampling()["logprobs"] is None  # the defaults change nothing


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (404, "not_found_error"),
    (405, "invalid_request_error"), (408, "invalid_request_error"), (413, "invalid_request_error"),
    (500, "server_error"), (503, "server_error"), (502, "server_error"), (429, "invalid_request_error"),
])
def test_every_status_the_server_answers_has_its_error_type(status: int, kind: str) -> None:
    # a 408 (the body's read timeout) had no entry; a 5xx without one read as the client's fault
    assert openai.error(status, "why") == {"error": {"message": "why", "type": kind, "param": None, "code": None}}
    assert openai.llama_error(status, "why") == {"error": {"code": status, "message": "why", "type": kind}}
    assert status in openai.ERROR_TYPES or status in (502, 429)
