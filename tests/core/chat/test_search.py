"""Full-text search over the chat store on real SQLite files: the FTS5 index, its triggers, its migration from a
database made before it, hostile queries, ranking, snippets, and the substring fallback without an index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tuillm.core.chat.saver import StreamingSaver
from tuillm.core.chat.schema import MIGRATIONS
from tuillm.core.chat.search import excerpt, fts_query, title_matches, words
from tuillm.core.chat.store import ChatStore, StoreError

FTS_STEP = next(i for i, step in enumerate(MIGRATIONS) if "messages_fts" in step)
HOSTILE = ['"', "AND(", "*", "NEAR(a b", "a OR", "col:x", "^start", "'; DROP TABLE messages; --", "\x00", "   ",
           '"unterminated', "(((", "-x", "+", "NOT", "{content}:x", "x AND NOT y", "é*", "🙂"]


def hits(store: ChatStore, text: str, limit: int = 50) -> list[str]:
    return [store.get_message(hit.message_id).content for hit in store.search_messages(text, limit)]


def test_query_is_only_quoted_words() -> None:
    assert words("AND( \"x\" y_z NEAR/3 *") == ["AND", "x", "y", "z", "NEAR", "3"]
    assert fts_query("lighthouse keep") == '"lighthouse" "keep"*'
    assert fts_query('" * ( ) :') is None
    assert fts_query("   ") is None


def test_title_filter_words_ignore_case() -> None:
    assert title_matches("Holiday plans for STRASSE", "plans holi")
    assert title_matches("Straße", "STRASSE")  # casefold, not lower
    assert not title_matches("Holiday plans", "holiday trip")
    assert title_matches("anything", "")


def test_finds_words_in_every_chat_with_marked_snippets(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        old = store.create_chat("Lighthouse story")
        store.add_message(old.id, "user", "Tell me about the keeper of the lighthouse on the northern cape.")
        new = store.create_chat("Cooking")
        store.add_message(new.id, "user", "How long do I boil an egg?")
        store.add_message(new.id, "assistant", "About seven minutes for a firm egg.")
        [hit] = store.search_messages("LIGHTHOUSE keeper").hits
        assert (hit.chat_id, hit.chat_title, hit.role) == (old.id, "Lighthouse story", "user")
        marked = [hit.snippet[a:b] for a, b in hit.marks]
        assert sorted(marked) == ["keeper", "lighthouse"], hit
        assert "\ue000" not in hit.snippet and "\ue001" not in hit.snippet
        assert hits(store, "lightho") == [store.messages(old.id)[0].content]  # the last word is a prefix
        assert hits(store, "light keeper") == []  # ... only the last
        assert len(hits(store, "egg")) == 2
        assert hits(store, "egg firm") == ["About seven minutes for a firm egg."]
        assert hits(store, "cafe") == []
        store.add_message(new.id, "user", "Un café, s'il vous plaît.")
        assert hits(store, "cafe") == ["Un café, s'il vous plaît."]  # diacritics folded


def test_snippets_carry_no_terminal_sequences(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("t")
        store.add_message(chat.id, "assistant", "\x1b]52;c;aGk=\x07 the secret \x1b[2J word\r\nnext line\t\x9b31m")
        [hit] = store.search_messages("secret").hits
        assert hit.snippet.isprintable(), repr(hit.snippet)
        assert [hit.snippet[a:b] for a, b in hit.marks] == ["secret"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_queries_never_raise(tmp_path: Path, text: str) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("c")
        store.add_message(chat.id, "user", 'He said "AND(" and NOT x * y; col:x {content}:x é 🙂 -x +')
        found = store.search_messages(text).hits
        assert all(hit.chat_id == chat.id for hit in found)
        if not words(text):
            assert found == []  # nothing to look for: nothing, not every message
        assert [c.title for c in store.list_chats()] == ["c"]  # the table is still there


def test_ranking_best_then_newest_and_limit(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("r")
        weak = store.add_message(chat.id, "user", "rust " + " ".join(["filler"] * 40)).id
        strong = store.add_message(chat.id, "user", "rust rust rust").id
        tie_old = store.add_message(chat.id, "user", "python python").id
        tie_new = store.add_message(chat.id, "user", "python python").id
        assert [h.message_id for h in store.search_messages("rust")] == [strong, weak]
        assert [h.message_id for h in store.search_messages("python")] == [tie_new, tie_old]
        assert [h.message_id for h in store.search_messages("python", limit=1)] == [tie_new]
        for bad in (0, -1, True, 2.5):
            with pytest.raises(ValueError, match="search limit"):
                store.search_messages("python", limit=bad)  # type: ignore[arg-type]


def test_triggers_follow_edits_streaming_and_deletes(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("t")
        message = store.add_message(chat.id, "user", "first draft about otters")
        store.update_message(message.id, "second draft about beavers")
        assert hits(store, "otters") == [] and hits(store, "beavers") == ["second draft about beavers"]
        saver = StreamingSaver(store, chat.id, interval=0.0)
        saver.add("a reply on ")
        saver.add("hedgehogs")
        assert hits(store, "hedgehogs") == ["a reply on hedgehogs"]  # searchable while it streams
        saver.finish("a reply on squirrels")
        assert hits(store, "hedgehogs") == [] and hits(store, "squirrels") == ["a reply on squirrels"]
        store.delete_message(saver.message.id)
        assert hits(store, "squirrels") == []
        store.delete_chat(chat.id)  # cascades to the messages: the triggers run for those too
        assert hits(store, "beavers") == []
        db = sqlite3.connect(store.path)
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")  # raises if off
        db.close()


def old_database(path: Path) -> None:
    """A chat database as tuillm left it before the search step: chats with messages, no index."""
    db = sqlite3.connect(path)
    for number in range(FTS_STEP):
        db.executescript(MIGRATIONS[number])
    db.execute("INSERT INTO chats (title, created, updated) VALUES ('Old one', 1.0, 2.0)")
    db.execute("INSERT INTO chats (title, created, updated) VALUES ('Older one', 0.5, 0.6)")
    db.execute("INSERT INTO messages (chat_id, role, content, created) VALUES (1, 'user', 'plain words', 1.5)")
    db.execute("INSERT INTO messages (chat_id, role, content, created) VALUES (2, 'user', 'zeppelin ride', 0.55)")
    db.execute(f"PRAGMA user_version = {FTS_STEP}")
    db.commit()
    db.close()


def test_an_older_database_becomes_searchable(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old_database(path)
    with ChatStore(path) as store:
        assert store.schema_version == len(MIGRATIONS) and store.search_messages("x").indexed
        [hit] = store.search_messages("zeppelin").hits  # a row from before the index: backfilled
        assert (hit.chat_title, hit.created) == ("Older one", 0.55)
        store.add_message(1, "user", "another zeppelin")
        assert len(store.search_messages("zeppelin")) == 2


def test_without_fts5_the_store_opens_and_search_is_a_substring_match(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An SQLite built without FTS5 fails the step with "no such module": the store skips it (this build has FTS5,
    so the step is replaced by one naming a module no build has) and searches with LIKE."""
    steps = list(MIGRATIONS)
    steps[FTS_STEP] = "CREATE VIRTUAL TABLE messages_fts USING no_such_fts(content)"
    monkeypatch.setattr("tuillm.core.chat.store.MIGRATIONS", steps)
    path = tmp_path / "old.sqlite3"
    old_database(path)
    with ChatStore(path) as store:
        assert store.schema_version == len(MIGRATIONS) and not store.search_messages("x").indexed
        chat = store.create_chat("New")
        store.add_message(chat.id, "user", "A Zeppelin over 100% of the town_hall")
        found = store.search_messages("zeppelin").hits
        assert [h.chat_title for h in found] == ["New", "Older one"]  # newest first
        assert [found[0].snippet[a:b] for a, b in found[0].marks] == ["Zeppelin"]
        assert [h.chat_title for h in store.search_messages("100 town_hall")] == ["New"]
        assert store.search_messages("town_ball").hits == []  # every word must be there; "_" is no wildcard
        assert [h.snippet for h in store.search_messages("zeppelin 100")] == [
            "A Zeppelin over 100% of the town_hall"]  # short enough: whole, without "…"
        for text in HOSTILE:
            store.search_messages(text)


def test_excerpt_window_and_marks() -> None:
    content = "x" * 200 + " the needle here \x1b[31mred\x1b[0m " + "y" * 200
    text, marks = excerpt(content, ["needle", "red"])
    assert text.startswith("…") and text.endswith("…") and "\x1b" not in text
    assert [text[a:b] for a, b in marks] == ["needle", "red"]


def test_a_broken_database_is_a_store_error(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        store.create_chat("c")
        db = sqlite3.connect(store.path)
        db.execute("DROP TRIGGER messages_fts_insert")
        db.execute("DROP TABLE messages_fts")
        db.execute("CREATE TABLE messages_fts (x)")  # not an FTS table: MATCH fails
        db.commit()
        db.close()
        with pytest.raises(StoreError):
            store.search_messages("anything")
