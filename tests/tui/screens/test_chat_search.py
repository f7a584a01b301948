"""Ctrl+F in the Chat pane: full-text search over every chat, results as they type, Enter opens the chat with the
message in view and selected; hostile queries, a broken database and a busy pane are one line, never a traceback;
and a snapshot of the dialog at 80x24."""

from __future__ import annotations

import calendar
import sqlite3
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, OptionList

from tests.tui.app_helpers import make_app, run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.search import Found, Hit
from tuillm.core.chat.store import ChatStore, StoreError, default_path
from tuillm.tui.screens.chat_search import HINT, ChatSearchScreen, result_line, when
from tuillm.tui.widgets.chat_view import ChatView

# 5 March 2024, noon UTC: the same day in every time zone a test machine runs in.
OLD_DAY = calendar.timegm((2024, 3, 5, 12, 0, 0))


def store_chats(filler: int = 30) -> tuple[int, int]:
    """An older chat whose early message holds "zeppelin" (far above the end of a long chat), and newer chats
    without it. Returns (the older chat's id, the message's id)."""
    with ChatStore() as store:
        older = store.create_chat("Airships")
        target = store.add_message(older.id, "user", "Tell me about the first zeppelin flight over the lake.")
        for n in range(filler):
            store.add_message(older.id, "assistant" if n % 2 == 0 else "user", f"Filler line number {n}.")
        for title in ("Cooking eggs", "Rust lifetimes"):
            chat = store.create_chat(title)
            store.add_message(chat.id, "user", f"A question about {title.lower()}.")
    db = sqlite3.connect(default_path())  # fixed dates: the dialog shows them
    db.execute("UPDATE messages SET created = ?", (OLD_DAY,))
    db.commit()
    db.close()
    return older.id, target.id


def dialog(pilot: Pilot) -> ChatSearchScreen:
    screen = pilot.app.screen
    assert isinstance(screen, ChatSearchScreen), screen
    return screen


def status(screen: ChatSearchScreen) -> str:
    return str(screen.query_one("#search-status", Label).render())


async def search_for(pilot: Pilot, text: str) -> ChatSearchScreen:
    """Ctrl+F, type ``text``, wait for its answer."""
    await pilot.press("ctrl+f")
    await until(pilot, lambda: isinstance(pilot.app.screen, ChatSearchScreen), "the search dialog")
    screen = dialog(pilot)
    await pilot.press(*text)
    await until(pilot, lambda: screen.shown_text == text, f"the answer to {text!r}")
    return screen


def test_dates_and_result_lines() -> None:
    now = calendar.timegm((2024, 3, 5, 15, 0, 0))
    assert when(now - 60, now) == time.strftime("%H:%M", time.localtime(now - 60))
    assert when(OLD_DAY - 40 * 86400, now) == time.strftime("%d %b", time.localtime(OLD_DAY - 40 * 86400))
    assert when(OLD_DAY - 400 * 86400, now).endswith("2023")
    hit = Hit(message_id=1, chat_id=2, chat_title="A \x1b[2Jtitle " + "x" * 60, role="user", created=OLD_DAY,
              snippet="…the zeppelin flight…", marks=((5, 13),))
    line = result_line(hit, now)
    title, snippet = line.plain.split("\n")
    assert "\x1b" not in title and title.startswith("A title") and "…" in title and len(title) < 70
    assert snippet == "  …the zeppelin flight…"
    marked = [line.plain[span.start:span.end] for span in line.spans if "reverse" in str(span.style)]
    assert marked == ["zeppelin"]


@run_async
async def test_ctrl_f_finds_a_message_in_an_older_chat_and_opens_it(tmp_path: Path) -> None:
    older, target = store_chats()
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id is not None, "the newest chat open")
        assert pane.chat_id != older
        screen = await search_for(pilot, "zeppel")  # the last word as a prefix
        assert [(h.chat_id, h.message_id) for h in screen.hits] == [(older, target)]
        assert status(screen) == "1 message, best match first"
        results = screen.query_one("#search-results", OptionList)
        assert "Airships · 05 Mar 2024 · user" in str(results.get_option_at_index(0).prompt)
        await pilot.press("enter")
        await until(pilot, lambda: pane.chat_id == older, "the older chat open")
        view = app.query_one(ChatView)
        await until(pilot, lambda: (b := view.selected_bubble()) is not None and b.message_id == target,
                         "the found message selected")
        bubble = view.selected_bubble()
        assert bubble is not None and bubble.has_class("-selected") and "zeppelin" in bubble.content
        # In view: the chat opened at its end, 30 messages below the one found.
        await until(pilot, lambda: view.scroll_y <= bubble.virtual_region.y < view.scroll_y + view.size.height,
                         "the found message scrolled into view")


@run_async
async def test_typed_and_enter_at_once_opens_the_first_answer(tmp_path: Path) -> None:
    older, _target = store_chats(filler=2)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = chat_pane(app)
        await pilot.press("ctrl+f")
        await until(pilot, lambda: isinstance(app.screen, ChatSearchScreen), "the search dialog")
        await pilot.press(*"zeppelin", "enter")  # before the debounce has run the query
        await until(pilot, lambda: pane.chat_id == older, "the older chat open")
        assert not isinstance(app.screen, ChatSearchScreen)


@run_async
async def test_down_then_enter_picks_a_result_and_esc_closes(tmp_path: Path) -> None:
    store_chats(filler=0)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id is not None, "the newest chat open")
        before = pane.chat_id
        screen = await search_for(pilot, "question")
        assert len(screen.hits) == 2 and status(screen) == "2 messages, best match first"
        await pilot.press("escape")
        assert not isinstance(app.screen, ChatSearchScreen) and pane.chat_id == before
        screen = await search_for(pilot, "question")
        second = screen.hits[1]
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: pane.chat_id == second.chat_id, "the second result's chat open")


@pytest.mark.parametrize("text", ['"', "AND(", "*", "NEAR(", "a OR", "'; DROP TABLE messages; --"])
@run_async
async def test_hostile_queries_are_words_or_nothing(tmp_path: Path, text: str) -> None:
    store_chats(filler=0)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        seen = record_notifications(app)
        screen = await search_for(pilot, text)
        assert status(screen) in (HINT, "No message holds these words.") or screen.hits
        assert not [n for n in seen if "rror" in n]
        await pilot.press("escape")
    with ChatStore() as store:
        assert len(store.list_chats()) == 3


@run_async
async def test_a_broken_index_and_a_busy_pane_are_one_line(tmp_path: Path) -> None:
    older, target = store_chats(filler=0)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id is not None, "the newest chat open")
        seen = record_notifications(app)
        pane.busy = True  # a reply streaming in the open chat: another chat is not opened under it
        await pane.open_found((older, target))
        assert pane.chat_id != older and any("Esc stops it" in n for n in seen)
        pane.busy = False

        def broken(_text: str) -> Found:
            raise StoreError("chats.sqlite3: database disk image is malformed")

        app.push_screen(ChatSearchScreen(broken))
        await until(pilot, lambda: isinstance(app.screen, ChatSearchScreen), "the search dialog")
        screen = dialog(pilot)
        await pilot.press(*"zeppelin")
        await until(pilot, lambda: screen.shown_text == "zeppelin", "the failed answer")
        assert status(screen) == "chats.sqlite3: database disk image is malformed" and screen.hits == []


@run_async
async def test_palette_command(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.store is not None and app.focused is not None, "the pane ready")
        [command] = [c for c in pane.commands() if c.title == "Search chats"]
        command.callback()
        await until(pilot, lambda: isinstance(app.screen, ChatSearchScreen) and bool(app.screen.query(Input)),
                         "the search dialog")
        await pilot.press(*"zeppelin")
        await until(pilot, lambda: dialog(pilot).shown_text == "zeppelin", "an answer")
        await pilot.press("escape")
        assert not isinstance(app.screen, ChatSearchScreen)


def test_snapshot_search_dialog(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    store_chats(filler=2)
    app = make_app([Path("models")], chat_backend=FakeBackend)

    async def run_before(pilot: Pilot) -> None:
        screen = await search_for(pilot, "about")
        for widget in screen.query("Input"):
            widget.cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@run_async
async def test_keys_typed_in_one_burst_reach_the_results(tmp_path: Path) -> None:
    # Over SSH "↓ ↓ Enter" may arrive in one read: the second ↓ must already move in the results.
    from textual import events

    store_chats(filler=0)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id is not None, "the newest chat open")
        screen = await search_for(pilot, "question")
        second = screen.hits[1]
        for key in ("down", "down", "enter"):
            app.post_message(events.Key(key, None))
        await until(pilot, lambda: not isinstance(app.screen, ChatSearchScreen), "the dialog closed", steps=200)
        await until(pilot, lambda: pane.chat_id == second.chat_id, "the second result's chat open", steps=200)
