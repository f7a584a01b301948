"""Importing chats: our own export round-trips, OpenAI ``messages`` lists (plain, wrapped, content parts) are taken,
and every field is checked before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuillm.core.chat.importer import ChatImportError, import_chat, parse_chat, read_chat_file
from tuillm.core.chat.store import ChatStore
from tuillm.core.llama.options import Sampling


@pytest.fixture
def store(tmp_path: Path):
    with ChatStore(tmp_path / "chats.sqlite3") as s:
        yield s


def write(tmp_path: Path, value: object, name: str = "chat.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_export_then_import_gives_the_same_chat(store: ChatStore, tmp_path: Path) -> None:
    chat = store.create_chat("Reversing lists", model="/models/a.gguf", system_prompt="Be brief.",
                             params=Sampling(temperature=0.2, max_tokens=64).to_json())
    store.set_model(chat.id, "/models/a.gguf", adapter="/adapters/style.gguf", load={"n_ctx": 2048, "lora_scale": 0.5})
    store.add_message(chat.id, "user", "How do I reverse a list?")
    store.add_message(chat.id, "assistant", "Use `items[::-1]`.\n\n```python\nitems.reverse()\n```",
                      stats={"generated_tokens": 12, "tokens_per_s": 30.0}, model="/models/a.gguf",
                      adapter="/adapters/style.gguf")
    store.add_message(chat.id, "user", "And a string? 🙂")
    store.add_message(chat.id, "assistant", "The same slic", complete=False, model="/models/a.gguf")
    path = store.export(chat.id, tmp_path / "export.json")

    imported = import_chat(store, path)
    assert imported.id != chat.id
    assert (imported.title, imported.model, imported.system_prompt) == ("Reversing lists", "/models/a.gguf",
                                                                        "Be brief.")
    assert imported.sampling == Sampling(temperature=0.2, max_tokens=64)
    assert (imported.adapter, imported.load_values) == ("/adapters/style.gguf", {"n_ctx": 2048, "lora_scale": 0.5})

    def shape(chat_id: int) -> list[tuple]:
        return [(m.role, m.content, m.complete, m.model, m.adapter, m.stats) for m in store.messages(chat_id)]

    assert shape(imported.id) == shape(chat.id)
    assert store.conversation(imported.id) == store.conversation(chat.id)


def test_an_openai_messages_list_plain_or_wrapped(store: ChatStore, tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Name a prime"}, {"type": "text", "text": "above 10."}]},
        {"role": "assistant", "content": "11", "name": "bot", "refusal": None},  # extra keys are ignored
    ]
    for value in (messages, {"model": "gpt-4o", "messages": messages, "temperature": 0.5}):
        chat = import_chat(store, write(tmp_path, value))
        assert chat.title == "Name a prime" and chat.system_prompt == "You are terse."
        assert chat.sampling == Sampling()  # a request's own fields are not our sampling parameters
        assert store.conversation(chat.id) == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a prime\nabove 10."},
            {"role": "assistant", "content": "11"},
        ]
    assert chat.model == "gpt-4o"


def test_developer_is_the_system_role_and_later_system_messages_stay(tmp_path: Path) -> None:
    chat = parse_chat([{"role": "developer", "content": "Rules."}, {"role": "user", "content": "hi"},
                       {"role": "system", "content": "Now in French."}, {"role": "user", "content": "ok"}])
    assert chat.system_prompt == "Rules."
    assert [(m.role, m.content) for m in chat.messages] == [("user", "hi"), ("system", "Now in French."),
                                                             ("user", "ok")]


def test_a_system_prompt_is_kept_without_escape_sequences() -> None:
    # The chat options dialog shows it in a TextArea, which draws an OSC 52 (clipboard write) as it is.
    hostile = "Be brief.\x1b]52;c;aGk=\x07\nNo \x9b2Jtables."
    for value in ({"system_prompt": hostile, "messages": [{"role": "user", "content": "x"}]},
                  [{"role": "system", "content": hostile}, {"role": "user", "content": "x"}]):
        assert parse_chat(value).system_prompt == "Be brief.\nNo tables."


def test_titles_are_one_safe_line(tmp_path: Path) -> None:
    assert parse_chat({"title": "  Plan\x1b]0;pwned\x07 B\n", "messages": [{"role": "user", "content": "x"}]}
                      ).title == "Plan B"
    long = "word " * 50
    assert parse_chat([{"role": "user", "content": f"\n{long}\nsecond line"}]).title == long.strip()[:60]
    assert parse_chat([{"role": "assistant", "content": "only a reply"}]).title == "Imported chat"


@pytest.mark.parametrize(("value", "error"), [
    ({"chats": []}, 'no "messages": not a chat export or an OpenAI messages list'),
    ("just text", "not a chat: expected an object with messages or a list of messages"),
    ({"messages": {"role": "user"}}, '"messages" is not a list'),
    ([], "no user or assistant message to import"),
    ([{"role": "system", "content": "only a system prompt"}], "no user or assistant message to import"),
    ([{"role": "user", "content": "a"}, "b"], "message 1 is not an object"),
    ([{"role": "tool", "content": "42", "tool_call_id": "x"}], "message 0: role \"tool\" is not one of system, user, "
                                                                "assistant"),
    ([{"content": "no role"}], 'message 0 has no "role"'),
    ([{"role": "user"}], "message 0: the content is missing, not text or a list of text parts"),
    ([{"role": "user", "content": 7}], "message 0: the content is a int, not text or a list of text parts"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "message 0: content part 0 is of type \"image_url\"; only text can be imported"),
    ([{"role": "user", "content": [{"type": "text"}]}], "message 0: content part 0 has no text"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}],
     "message 0: tool calls cannot be imported"),
    ([{"role": "user", "content": "x", "complete": "yes"}], 'message 0: "complete" is not true or false'),
    ([{"role": "user", "content": "x", "stats": [1]}], 'message 0: "stats" is not an object'),
    ([{"role": "user", "content": "x", "model": 3}], 'message 0: "model" is not a string'),
    ({"title": 5, "messages": [{"role": "user", "content": "x"}]}, '"title" is not a string'),
    ({"load": {"n_ctx": -4}, "messages": [{"role": "user", "content": "x"}]},
     '"load" n_ctx: a whole number at least 16'),
    ({"load": "big", "messages": [{"role": "user", "content": "x"}]}, '"load" is not an object'),
    ({"params": [], "messages": [{"role": "user", "content": "x"}]}, '"params" is not an object'),
    ({"params": {"seed": 1.5}, "messages": [{"role": "user", "content": "x"}]}, '"params" seed: 1.5 is not a whole'),
    ({"params": {"temperature": float("nan")}, "messages": [{"role": "user", "content": "x"}]},
     '"params" temperature: must be a number from 0 to 5, not nan'),
    ({"params": {"max_tokens": True}, "messages": [{"role": "user", "content": "x"}]}, '"params" max_tokens: must'),
])
def test_refusals_name_the_problem_and_the_index(value: object, error: str) -> None:
    with pytest.raises(ChatImportError) as caught:
        parse_chat(value)
    assert str(caught.value).startswith(error)
    assert "\n" not in str(caught.value)


def test_a_refused_file_writes_nothing(store: ChatStore, tmp_path: Path) -> None:
    path = write(tmp_path, [{"role": "user", "content": "fine"}, {"role": "user", "content": [{"type": "audio"}]}])
    with pytest.raises(ChatImportError, match=r"chat.json: message 1: content part 0 is of type \"audio\""):
        import_chat(store, path)
    assert store.list_chats() == []


def test_an_interrupted_import_leaves_nothing(store: ChatStore, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C, SIGTERM or SIGHUP (the CLI's handlers raise) part way through the messages: the chat is not there."""
    path = write(tmp_path, [{"role": "user", "content": f"m{i}"} for i in range(50)])
    add = store.add_message
    calls = []

    def interrupted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt
        return add(*args, **kwargs)

    monkeypatch.setattr(store, "add_message", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_chat(store, path)
    assert len(calls) == 30 and store.list_chats() == []
    monkeypatch.undo()
    assert len(store.messages(import_chat(store, path).id)) == 50  # the store still writes after the rollback


def test_file_level_refusals(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"messages": [', encoding="utf-8")
    with pytest.raises(ChatImportError, match=r"bad.json is not JSON \(line 1, column 15: Expecting value\)$"):
        read_chat_file(tmp_path / "bad.json")
    (tmp_path / "latin.json").write_bytes('["café"]'.encode("latin-1"))
    with pytest.raises(ChatImportError, match=r"latin.json is not UTF-8 text$"):
        read_chat_file(tmp_path / "latin.json")
    (tmp_path / "long.json").write_text('[{"role": "user", "content": "hi", "n": ' + "9" * 5000 + "}]")
    with pytest.raises(ChatImportError, match=r"long.json: the JSON holds a number too long to read$"):
        read_chat_file(tmp_path / "long.json")
    with pytest.raises(ChatImportError, match=r"missing.json: no such file$"):
        read_chat_file(tmp_path / "missing.json")
    with pytest.raises(ChatImportError, match=r"^no file named \(an empty path\)$"):
        read_chat_file("")  # not the current folder
    big = write(tmp_path, [{"role": "user", "content": "x" * 2000}], "big.json")
    with pytest.raises(ChatImportError, match=r"big.json is larger than 1000 bytes, the limit for a chat file$"):
        read_chat_file(big, max_bytes=1000)
    assert read_chat_file(big).messages[0].content == "x" * 2000


@pytest.mark.parametrize(("stats", "error"), [
    ({"generated_tokens": 5, "tokens_per_s": "fast"}, '"stats" tokens_per_s: "fast" is not a number from 0'),
    ({"generated_tokens": "\x1b]52;c;aGk=\x07"}, '"stats" generated_tokens: "\\u001b]52;c;aGk=\\u0007" is not'),
    ({"prompt_tokens": float("inf")}, '"stats" prompt_tokens: Infinity is not a whole number from 0'),
    ({"tokens_per_s": float("nan")}, '"stats" tokens_per_s: NaN is not a number from 0'),
    ({"generated_tokens": 3.5}, '"stats" generated_tokens: 3.5 is not a whole number from 0'),
    ({"context_used": -1}, '"stats" context_used: -1 is not a whole number from 0'),
    ({"n_ctx": True}, '"stats" n_ctx: true is not a whole number from 0'),
    ({"total_s": 10**400}, '"stats" total_s: 1000000000000000000000000000000000000000 is not a number from 0'),
    ({"finish_reason": ["stop"]}, '"stats" finish_reason: ["stop"] is not a line of text'),
])
def test_a_reply_s_figures_are_checked_as_the_chat_view_formats_them(stats: dict, error: str) -> None:
    # The chat view formats them ("{tokens_per_s:.1f}", int(prompt_tokens)): these broke it, or put escapes on screen.
    with pytest.raises(ChatImportError) as caught:
        parse_chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "stats": stats}])
    assert str(caught.value).startswith(f"message 1: {error}")


def test_a_reply_s_figures_keep_what_the_engine_writes(store: ChatStore, tmp_path: Path) -> None:
    stats = {"prompt_tokens": 20, "cached_tokens": 0, "generated_tokens": 12, "ttft_s": 0.5, "tokens_per_s": 30,
             "total_s": 0.9, "finish_reason": "stop", "n_ctx": 2048, "context_used": 32}
    reply = {"role": "assistant", "content": "a", "stats": {**stats, "from_a_newer_version": [1, {"x": None}]}}
    chat = import_chat(store, write(tmp_path, [{"role": "user", "content": "q"}, reply, {"role": "user", "content": "r",
                                                                                            "stats": {}}]))
    assert [m.stats for m in store.messages(chat.id)] == [None, stats, None]  # a key nothing reads is left out
