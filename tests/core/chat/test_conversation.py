"""A stored conversation driven by the real engine: what the TUI pane and `tuillm chat --save` rely on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import Token
from tuillm.core.chat.store import ChatStore
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions, Sampling

GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=8)


@pytest.fixture(scope="module")
def session(demo_gguf: Path) -> Iterator[ChatSession]:
    s = ChatSession()
    s.load(demo_gguf, LoadOptions(n_ctx=512)).result()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    with ChatStore(tmp_path / "chats.sqlite3") as s:
        yield s


def roles(store: ChatStore, chat_id: int) -> list[str]:
    return [m.role for m in store.messages(chat_id)]


def test_send_saves_both_sides_and_names_the_chat(session: ChatSession, store: ChatStore, tmp_path: Path) -> None:
    chat = Conversation.new(session, store, model="demo", system_prompt="You are brief.", sampling=GREEDY)
    streamed: list[str] = []
    done = chat.send("What is the capital of France?\nThanks.",
                     listener=lambda e: streamed.append(e.text) if isinstance(e, Token) else None).result()
    assert chat.chat.title == "What is the capital of France?"
    user, reply = store.messages(chat.chat_id)
    assert (user.role, user.content) == ("user", "What is the capital of France?\nThanks.")
    assert reply.role == "assistant" and reply.content == done.text == "".join(streamed) and reply.complete
    assert reply.stats is not None and reply.stats["generated_tokens"] == done.stats.generated_tokens
    assert (user.model, reply.model) == ("", session.model_path)  # the reply records the model that wrote it
    # Reopening the database (a new app) finds all of it.
    with ChatStore(tmp_path / "chats.sqlite3") as again:
        assert [m.content for m in again.messages(chat.chat_id)] == [user.content, done.text]
        assert again.get_chat(chat.chat_id).params == GREEDY.to_json()


def test_second_turn_sends_the_whole_history(session: ChatSession, store: ChatStore) -> None:
    chat = Conversation.new(session, store, sampling=GREEDY)
    first = chat.send("Hello!").result()
    second = chat.send("What did I just say?").result()
    assert second.stats.prompt_tokens > first.stats.prompt_tokens + first.stats.generated_tokens
    assert second.stats.cached_tokens > 0
    assert roles(store, chat.chat_id) == ["user", "assistant", "user", "assistant"]


def test_regenerate_keeps_the_earlier_reply_as_an_alternative(session: ChatSession, store: ChatStore) -> None:
    chat = Conversation.new(session, store, sampling=Sampling(temperature=1.0, max_tokens=8, seed=1))
    first = chat.send("Tell me a word.").result()
    before = store.messages(chat.chat_id)
    chat.set_sampling(Sampling(temperature=1.0, max_tokens=8, seed=2))
    new = chat.regenerate().result()
    after = store.messages(chat.chat_id)
    assert [m.role for m in after] == ["user", "assistant"]
    assert after[0].id == before[0].id and after[1].id != before[1].id and after[1].content == new.text
    assert after[1].alternatives == (2, 2) and after[1].parent_id == before[0].id
    # The first reply is one key away, as it was written.
    assert store.alternative(after[1].id, -1) == before[1].id
    assert [m.content for m in store.messages(chat.chat_id)] == ["Tell me a word.", first.text]


def test_regenerate_an_earlier_reply_answers_only_what_came_before(session: ChatSession,
                                                                     store: ChatStore) -> None:
    chat = Conversation.new(session, store, sampling=GREEDY)
    first = chat.send("Name a colour.").result()
    chat.send("Name a fruit.").result()
    question, reply, *_ = store.messages(chat.chat_id)
    done = chat.regenerate(message=reply.id).result()
    # The model saw the branch up to the question, as for the first answer: not the later turn.
    assert done.stats.prompt_tokens == first.stats.prompt_tokens
    again = store.messages(chat.chat_id)
    assert [m.id for m in again][:1] == [question.id] and len(again) == 2 and again[1].alternatives == (2, 2)
    # The question itself, chosen: answered again too, a third reply.
    chat.regenerate(message=question.id).result()
    assert store.messages(chat.chat_id)[1].alternatives == (3, 3)
    with pytest.raises(TuillmError, match="no message"):
        chat.regenerate(message=10_000)


def test_edit_and_resend_the_last_user_message(session: ChatSession, store: ChatStore) -> None:
    chat = Conversation.new(session, store, sampling=GREEDY)
    chat.send("First question").result()
    chat.send("Second question with a typo").result()
    typo = store.messages(chat.chat_id)[2]
    chat.edit_and_resend("Second question").result()
    messages = store.messages(chat.chat_id)
    contents = [(m.role, m.content) for m in messages]
    assert [c for c in contents if c[0] == "user"] == [("user", "First question"), ("user", "Second question")]
    assert len(contents) == 4 and messages[2].alternatives == (2, 2)
    # Nothing was destroyed: the message with the typo and its answer are the other branch.
    store.activate(typo.id)
    assert [m.content for m in store.messages(chat.chat_id)][2] == "Second question with a typo"
    assert len(store.messages(chat.chat_id)) == 4


def test_edit_an_earlier_message_starts_a_branch(session: ChatSession, store: ChatStore) -> None:
    chat = Conversation.new(session, store, sampling=GREEDY)
    chat.send("Hi").result()
    chat.send("How are you?").result()
    first = store.messages(chat.chat_id)[0]
    chat.edit(first.id, "Hello").result()
    messages = store.messages(chat.chat_id)
    assert [m.role for m in messages] == ["user", "assistant"] and messages[0].content == "Hello"
    assert messages[0].alternatives == (2, 2) and messages[0].parent_id is None
    assert [m["content"] for m in store.conversation(chat.chat_id)] == ["Hello", messages[1].content]
    other = Conversation.new(session, store)
    with pytest.raises(TuillmError, match="no message"):
        other.edit(first.id, "x")  # a message of another chat
    with pytest.raises(TuillmError, match="only your own"):
        chat.edit(messages[1].id, "x")


def test_stopped_reply_is_kept_as_interrupted(session: ChatSession, store: ChatStore) -> None:
    chat = Conversation.new(session, store, sampling=Sampling(temperature=0.0, max_tokens=200))
    count = [0]

    def stop_after_two(event: object) -> None:
        if isinstance(event, Token):
            count[0] += 1
            if count[0] == 2:
                session.stop()

    done = chat.send("Write a poem about the sea.", listener=stop_after_two).result()
    reply = store.messages(chat.chat_id)[-1]
    assert done.stats.finish_reason == "cancelled" and not reply.complete and reply.content == done.text


def test_failed_reply_leaves_no_empty_message(demo_gguf: Path, store: ChatStore) -> None:
    with ChatSession() as small:
        small.load(demo_gguf, LoadOptions(n_ctx=64)).result()
        chat = Conversation.new(small, store)
        with pytest.raises(TuillmError, match="longer than the context"):
            chat.send("word " * 200).result()
        assert roles(store, chat.chat_id) == ["user"]
        with pytest.raises(TuillmError, match="empty"):
            chat.send("   ")
    with pytest.raises(TuillmError, match="no message"):
        Conversation.new(small, store).regenerate()
