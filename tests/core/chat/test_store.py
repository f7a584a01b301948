"""The chat store on real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuillm.core.chat.saver import StreamingSaver
from tuillm.core.chat.schema import MIGRATIONS
from tuillm.core.chat.store import MAX_TITLE_CHARS, ChatStore, StoreError, default_path


def test_default_location_is_under_the_data_dir(isolated_home: Path) -> None:
    with ChatStore() as store:
        assert store.path == default_path()
        assert str(store.path).startswith(str(isolated_home)) and store.path.is_file()


def test_schema_wal_and_migrations(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {"chats", "messages"}
    db.close()
    # Reopening runs nothing again and keeps data.
    with ChatStore(path) as store:
        chat = store.create_chat("kept")
    with ChatStore(path) as store:
        assert [c.title for c in store.list_chats()] == ["kept"] and store.get_chat(chat.id).title == "kept"


def old_database(path: Path, version: int) -> None:
    """A chat database as tuillm left it at schema ``version``: one chat with a message."""
    db = sqlite3.connect(path)
    for number in range(version):
        db.executescript(MIGRATIONS[number])
    db.execute("INSERT INTO chats (title, model, created, updated) VALUES ('Old', '/m/old.gguf', 1.0, 2.0)")
    db.execute("INSERT INTO messages (chat_id, role, content, created) VALUES (1, 'user', 'Hello', 1.5)")
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_an_older_database_opens_and_keeps_its_chats(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.sqlite3"
    old_database(path, version)
    with ChatStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        [chat] = store.list_chats()
        assert (chat.title, chat.model, chat.updated, chat.draft) == ("Old", "/m/old.gguf", 2.0, "")
        assert [(m.content, m.model) for m in store.messages(chat.id)] == [("Hello", "")]
        reply = store.add_message(chat.id, "assistant", "Hi", model="/m/new.gguf")
        assert store.get_message(reply.id).model == "/m/new.gguf"
        assert StreamingSaver(store, chat.id, model="/m/new.gguf").message.model == "/m/new.gguf"


def test_drafts_are_kept_per_chat_without_reordering(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with ChatStore(path) as store:
        a, b = store.create_chat("A"), store.create_chat("B")
        store.set_draft(a.id, "half a thought\nsecond line")
        assert [c.id for c in store.list_chats()] == [b.id, a.id]  # typing is not a change of the chat
        with pytest.raises(StoreError, match="draft is text"):
            store.set_draft(b.id, 3)  # type: ignore[arg-type]
    with ChatStore(path) as store:
        assert (store.get_chat(a.id).draft, store.get_chat(b.id).draft) == ("half a thought\nsecond line", "")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.close()
    with pytest.raises(StoreError, match="newer tuillm"):
        ChatStore(path)


def test_chats_messages_rename_delete(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        a = store.create_chat("First", model="demo", system_prompt="Be brief.", params={"temperature": 0.2})
        b = store.create_chat("Second")
        store.add_message(a.id, "user", "Hello there")
        reply = store.add_message(a.id, "assistant", "Hi!", stats={"generated_tokens": 2})
        assert store.get_message(reply.id).stats == {"generated_tokens": 2}
        assert store.list_chats()[0].id == a.id  # a message moves its chat to the top
        assert store.conversation(a.id) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": "Hi!"},
        ]
        assert store.get_chat(a.id).params == {"temperature": 0.2}
        assert store.rename_chat(b.id, "  Renamed ").title == "Renamed"
        with pytest.raises(StoreError, match="empty"):
            store.rename_chat(b.id, "   ")
        store.update_chat(a.id, system_prompt="Be kind.", params={"top_k": 5})
        assert store.get_chat(a.id).system_prompt == "Be kind." and store.get_chat(a.id).params == {"top_k": 5}
        store.delete_chat(a.id)
        assert [c.id for c in store.list_chats()] == [b.id]
        assert store.messages(a.id) == []  # cascaded
        with pytest.raises(StoreError, match="no chat"):
            store.get_chat(a.id)
        with pytest.raises(StoreError, match="role"):
            store.add_message(b.id, "tool", "x")


def test_a_title_is_one_line_without_control_sequences_and_bounded(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.db") as store:
        chat = store.create_chat()
        # A first message (which names a new chat) or a paste may hold what clears the screen or renames the window.
        assert store.rename_chat(chat.id, " a\x1b[2Jb\x1b]0;pwned\x07\tc [bold]d ").title == "ab c [bold]d"
        assert store.rename_chat(chat.id, "x" * 10_000).title == "x" * MAX_TITLE_CHARS
        with pytest.raises(StoreError, match="empty"):
            store.rename_chat(chat.id, "\x1b[31m\x07")


def test_a_model_name_that_is_not_utf8_is_a_store_error(tmp_path: Path) -> None:
    # A file name's byte that is not UTF-8 (a lone surrogate, as Python reads it): sqlite3 raised UnicodeEncodeError,
    # which the pane's handlers (they catch StoreError) let through.
    with ChatStore(tmp_path / "c.db") as store:
        with pytest.raises(StoreError, match="not UTF-8"):
            store.create_chat(model="/models/bad\udcff.gguf")
        chat = store.create_chat(model="/models/good.gguf")
        with pytest.raises(StoreError, match="not UTF-8"):
            store.set_model(chat.id, "/models/bad\udcff.gguf")
        assert store.get_chat(chat.id).model == "/models/good.gguf"


def test_deleting_a_message_takes_what_follows_it(tmp_path: Path) -> None:
    """Only a reply that failed before its first token is deleted; a deleted middle takes its branch with it."""
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("c")
        ids = [store.add_message(chat.id, r, t).id for r, t in
               [("user", "1"), ("assistant", "2"), ("user", "3"), ("assistant", "4")]]
        store.delete_message(ids[2])
        assert [m.content for m in store.messages(chat.id)] == ["1", "2"]
        assert store.add_message(chat.id, "user", "5").parent_id == ids[1]


def test_search_filters_titles(tmp_path: Path) -> None:
    """The chat list's filter: titles only (messages are core.chat.search's, tests/core/chat/test_search.py)."""
    with ChatStore(tmp_path / "c.sqlite3") as store:
        a = store.create_chat("Holiday plans")
        b = store.create_chat("Code review: 100% CPU_time")
        store.add_message(a.id, "user", "Why is malloc slow?")
        assert [c.id for c in store.search("holiday")] == [a.id]
        assert [c.id for c in store.search("100%")] == [b.id]
        assert [c.id for c in store.search("CPU_t")] == [b.id]
        assert store.search("CPUxt") == []  # "_" is literal, not a wildcard
        assert store.search("malloc") == []  # a message's words are not a title's
        assert [c.id for c in store.search("")] == [a.id, b.id]  # nothing typed: every chat, newest first


def test_export_markdown_and_json(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("Export me", model="demo", system_prompt="Sys")
        store.add_message(chat.id, "user", "Question?")
        store.add_message(chat.id, "assistant", "```py\nprint(1)\n```", stats={"tokens_per_s": 10.0})
        store.add_message(chat.id, "assistant", "cut off", complete=False)
        md = store.export(chat.id, tmp_path / "out.md").read_text()
        assert md.startswith("# Export me\n") and "## System\n\nSys" in md and "## User\n\nQuestion?" in md
        assert "```py\nprint(1)\n```" in md and "## Assistant (interrupted)" in md
        data = json.loads(store.export(chat.id, tmp_path / "out.json").read_text())
        assert data["title"] == "Export me" and data["system_prompt"] == "Sys"
        assert [m["role"] for m in data["messages"]] == ["user", "assistant", "assistant"]
        assert data["messages"][1]["stats"] == {"tokens_per_s": 10.0}
        assert not list(tmp_path.glob(".*tmp*"))
        with pytest.raises(StoreError, match="cannot write"):
            store.export(chat.id, tmp_path / "no-such-dir" / "x.md")


def test_corrupt_and_unreadable_databases_are_clean_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StoreError, match="junk.sqlite3: not a readable chat database"):
        ChatStore(junk)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(StoreError, match="a-folder"):
        ChatStore(folder)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.sqlite3"
        ChatStore(locked).close()
        locked.chmod(0)
        with pytest.raises(StoreError, match="locked.sqlite3"):
            ChatStore(locked)


def test_streaming_saver_throttles_and_finishes(tmp_path: Path) -> None:
    now = [0.0]
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.create_chat("c")
        saver = StreamingSaver(store, chat.id, clock=lambda: now[0])
        for i in range(10):  # ten tokens within 0.45 s: no write yet
            now[0] = i * 0.05
            saver.add("a")
        assert saver.writes == 0 and store.get_message(saver.message.id).content == ""
        now[0] = 0.5
        saver.add("b")
        assert saver.writes == 1 and store.get_message(saver.message.id).content == "a" * 10 + "b"
        assert not store.get_message(saver.message.id).complete
        saver.finish(stats={"generated_tokens": 11})
        m = store.get_message(saver.message.id)
        assert m.complete and m.content == "a" * 10 + "b" and m.stats == {"generated_tokens": 11}


def test_partial_reply_survives_sigkill(tmp_path: Path) -> None:
    """A process killed mid-stream leaves the text it saved, at most the last half second short."""
    db = tmp_path / "c.sqlite3"
    script = textwrap.dedent(f"""
        import os, signal, time
        from tuillm.core.chat.saver import StreamingSaver
        from tuillm.core.chat.store import ChatStore
        store = ChatStore({str(db)!r})
        chat = store.create_chat("killed")
        store.add_message(chat.id, "user", "go")
        saver = StreamingSaver(store, chat.id, interval=0.05)
        for i in range(40):
            saver.add(f"t{{i}} ")
            time.sleep(0.01)
        # Streaming on, but no finish(): the process dies like a SIGKILLed app.
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    with ChatStore(db) as store:
        (chat,) = store.list_chats()
        user, reply = store.messages(chat.id)
        assert user.content == "go" and not reply.complete
        assert reply.content.startswith("t0 t1 ") and len(reply.content.split()) >= 5


def test_bad_stored_sampling_falls_back_to_the_defaults(tmp_path: Path) -> None:
    """A row another version or a hand edit wrote with values Sampling refuses opens with the defaults."""
    from tuillm.core.llama.options import Sampling

    with ChatStore(tmp_path / "c.sqlite3") as store:
        good = store.create_chat("good", params={"temperature": 0.3, "seed": 4})
        assert store.get_chat(good.id).sampling == Sampling(temperature=0.3, seed=4)
        for params in ({"top_p": 3}, {"temperature": "hot"}, {"max_tokens": 0}, {"seed": "x"},
                       {"temperature": float("nan")}):
            chat = store.create_chat("bad", params=params)
            assert store.get_chat(chat.id).sampling == Sampling(), params
        for text in ("not json", "[1, 2]", "null"):
            chat = store.create_chat("unreadable")
            store._run("UPDATE chats SET params = ? WHERE id = ?", (text, chat.id))
            assert store.get_chat(chat.id).params == {} and store.get_chat(chat.id).sampling == Sampling(), text
        assert len(store.list_chats()) == 9  # listing is not stopped by them either
