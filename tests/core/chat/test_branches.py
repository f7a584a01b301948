"""A chat's messages as a tree, on real SQLite files: branches, alternatives, forks, and older files migrated."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tuillm.core.chat.saver import StreamingSaver
from tuillm.core.chat.schema import MIGRATIONS
from tuillm.core.chat.store import ChatStore, StoreError


def contents(store: ChatStore, chat_id: int) -> list[str]:
    return [m.content for m in store.messages(chat_id)]


def alternatives(store: ChatStore, chat_id: int) -> list[tuple[int, int] | None]:
    return [m.alternatives for m in store.messages(chat_id)]


@pytest.fixture
def store(tmp_path: Path):
    with ChatStore(tmp_path / "chats.sqlite3") as s:
        yield s


def test_a_linear_chat_is_one_branch(store: ChatStore) -> None:
    chat = store.create_chat("c")
    first = store.add_message(chat.id, "user", "Hi")
    reply = store.add_message(chat.id, "assistant", "Hello")
    assert (first.parent_id, reply.parent_id) == (None, first.id)
    assert contents(store, chat.id) == ["Hi", "Hello"] and alternatives(store, chat.id) == [None, None]
    assert store.messages(store.create_chat("empty").id) == []


def test_alternatives_are_kept_and_browsed(store: ChatStore) -> None:
    chat = store.create_chat("c")
    question = store.add_message(chat.id, "user", "Q")
    first = store.add_message(chat.id, "assistant", "A1")
    store.add_message(chat.id, "user", "Q2")  # the first reply's branch goes on
    second = store.add_message(chat.id, "assistant", "A2", parent=question.id)
    third = store.add_message(chat.id, "assistant", "A3", parent=question.id)
    # The newest is shown, at the end of the list of three; the first one's continuation is not on this branch.
    assert contents(store, chat.id) == ["Q", "A3"] and alternatives(store, chat.id) == [None, (3, 3)]
    assert store.alternative(third.id, 1) is None and contents(store, chat.id) == ["Q", "A3"]
    assert store.alternative(third.id, -1) == second.id
    assert contents(store, chat.id) == ["Q", "A2"] and alternatives(store, chat.id)[1] == (2, 3)
    # Back to the first: its branch as it was left, continuation included.
    assert store.alternative(second.id, -1) == first.id
    assert contents(store, chat.id) == ["Q", "A1", "Q2"] and alternatives(store, chat.id) == [None, (1, 3), None]
    assert store.alternative(first.id, -1) is None
    # What the model sees and what is exported follow the branch shown.
    assert [m["content"] for m in store.conversation(chat.id)] == ["Q", "A1", "Q2"]
    assert [m["content"] for m in store.export_json(chat.id)["messages"]] == ["Q", "A1", "Q2"]
    assert "A2" not in store.export_markdown(chat.id) and "Q2" in store.export_markdown(chat.id)
    # A new message goes to the end of the branch shown.
    assert store.add_message(chat.id, "assistant", "A4").parent_id == contents_ids(store, chat.id)[-2]


def contents_ids(store: ChatStore, chat_id: int) -> list[int]:
    return [m.id for m in store.messages(chat_id)]


def test_an_edited_first_message_is_a_root_alternative(store: ChatStore) -> None:
    chat = store.create_chat("c")
    original = store.add_message(chat.id, "user", "Helo")
    store.add_message(chat.id, "assistant", "?")
    edited = store.add_message(chat.id, "user", "Hello", parent=None)
    assert edited.parent_id is None
    assert contents(store, chat.id) == ["Hello"] and alternatives(store, chat.id) == [(2, 2)]
    store.activate(original.id)  # a search hit on another branch: its branch, down to where it was left
    assert contents(store, chat.id) == ["Helo", "?"]
    with pytest.raises(StoreError, match="not in chat"):
        store.add_message(store.create_chat("other").id, "user", "x", parent=original.id)


def test_activate_keeps_the_current_branch_when_the_message_is_on_it(store: ChatStore) -> None:
    chat = store.create_chat("c")
    question = store.add_message(chat.id, "user", "Q")
    store.add_message(chat.id, "assistant", "A1")
    store.add_message(chat.id, "assistant", "A2", parent=question.id)
    older = store.add_message(chat.id, "user", "later on A2")
    store.activate(question.id)  # on the branch shown: nothing moves to a newer one
    assert contents(store, chat.id) == ["Q", "A2", "later on A2"] and older.id == contents_ids(store, chat.id)[-1]
    with pytest.raises(StoreError, match="no message"):
        store.activate(10_000)


def test_a_failed_alternative_goes_back_to_the_earlier_reply(store: ChatStore) -> None:
    chat = store.create_chat("c")
    question = store.add_message(chat.id, "user", "Q")
    store.add_message(chat.id, "assistant", "A1")
    saver = StreamingSaver(store, chat.id, parent=question.id)  # regenerate: the new reply is streaming
    assert contents(store, chat.id) == ["Q", ""] and alternatives(store, chat.id)[1] == (2, 2)
    store.delete_message(saver.message.id)  # it failed before its first token
    assert contents(store, chat.id) == ["Q", "A1"] and alternatives(store, chat.id) == [None, None]


def test_fork_copies_the_branch_up_to_a_message(store: ChatStore) -> None:
    chat = store.create_chat("Trip", model="/m/a.gguf", system_prompt="Be brief.", params={"temperature": 0.2})
    question = store.add_message(chat.id, "user", "Where to?")
    store.add_message(chat.id, "assistant", "Paris", stats={"generated_tokens": 1}, model="/m/a.gguf")
    reply = store.add_message(chat.id, "assistant", "Rome", parent=question.id, model="/m/a.gguf")
    store.add_message(chat.id, "user", "And then?")
    forked = store.fork(reply.id)
    assert (forked.title, forked.model, forked.system_prompt, forked.params) == (
        "Trip (fork)", "/m/a.gguf", "Be brief.", {"temperature": 0.2})
    copied = store.messages(forked.id)
    assert [(m.role, m.content, m.model) for m in copied] == [("user", "Where to?", ""),
                                                              ("assistant", "Rome", "/m/a.gguf")]
    assert all(m.alternatives is None for m in copied) and copied[0].id != question.id  # copies, one branch
    assert [c.id for c in store.list_chats()][0] == forked.id  # the newest chat, at the top of the list
    assert contents(store, chat.id) == ["Where to?", "Rome", "And then?"]  # the original is untouched
    assert store.fork(copied[0].id).title == "Trip (fork)"  # a fork of a fork is not "(fork) (fork)"
    store.delete_chat(chat.id)
    assert contents(store, forked.id) == ["Where to?", "Rome"]


def test_a_version_3_database_migrates_to_one_branch_per_chat(tmp_path: Path) -> None:
    """A file from before branches (schema 3, built by hand): each chat's messages follow each other in order."""
    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path)
    for step in MIGRATIONS[:3]:
        db.executescript(step)
    for chat, title in ((1, "First"), (2, "Second")):
        db.execute("INSERT INTO chats (id, title, created, updated) VALUES (?, ?, 1.0, 2.0)", (chat, title))
    rows = [(1, "user", "a"), (2, "user", "x"), (1, "assistant", "b"), (2, "assistant", "y"), (1, "user", "c")]
    for chat, role, text in rows:  # interleaved ids, as two chats written in turn leave them
        db.execute("INSERT INTO messages (chat_id, role, content, stats, created) VALUES (?, ?, ?, ?, 1.5)",
                   (chat, role, text, json.dumps({"generated_tokens": 1})))
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with ChatStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        first = store.messages(1)
        assert [m.content for m in first] == ["a", "b", "c"] and contents(store, 2) == ["x", "y"]
        assert [m.parent_id for m in first] == [None, first[0].id, first[1].id]
        assert all(m.alternatives is None for m in first)
        reply = store.add_message(1, "assistant", "d")
        assert reply.parent_id == first[-1].id and contents(store, 1) == ["a", "b", "c", "d"]


def test_a_hand_made_cycle_does_not_hang(store: ChatStore, tmp_path: Path) -> None:
    chat = store.create_chat("c")
    a = store.add_message(chat.id, "user", "a")
    b = store.add_message(chat.id, "assistant", "b")
    db = sqlite3.connect(tmp_path / "chats.sqlite3")
    db.execute("UPDATE messages SET parent_id = ? WHERE id = ?", (b.id, a.id))  # a file damaged by hand
    db.commit()
    db.close()
    assert contents(store, chat.id) == ["a", "b"]  # the walk up stops where a parent is not older


def test_a_leaf_left_pointing_elsewhere_falls_back_to_the_newest_message(store: ChatStore, tmp_path: Path) -> None:
    chat, other = store.create_chat("c"), store.create_chat("other")
    store.add_message(chat.id, "user", "a")
    store.add_message(chat.id, "assistant", "b")
    elsewhere = store.add_message(other.id, "user", "x")
    db = sqlite3.connect(tmp_path / "chats.sqlite3")
    db.execute("UPDATE chats SET leaf_id = ? WHERE id = ?", (elsewhere.id, chat.id))  # a hand edit, another version
    db.commit()
    db.close()
    assert contents(store, chat.id) == ["a", "b"] and store.add_message(chat.id, "user", "c").parent_id is not None
    assert contents(store, chat.id) == ["a", "b", "c"]
