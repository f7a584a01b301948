"""The chat list's filter (``#chat-sidebar``): typing narrows the list to matching titles through the store, ↓/Enter
go into the list, Esc clears, / comes back; the filter holds while the list is redrawn."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.app_helpers import make_app, run_async, until
from tests.tui.chat_helpers import chat_app, chat_pane
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_sidebar import PLACEHOLDER, ChatSidebar

WIDE = (120, 30)  # the list is shown (at 80 columns it hides itself until Ctrl+L)
TITLES = ["Lighthouse story", "Cooking eggs", "Rust lifetimes", "Straße names"]


def store_chats() -> dict[str, int]:
    with ChatStore() as store:
        ids = {}
        for title in TITLES:
            chat = store.create_chat(title)
            store.add_message(chat.id, "user", f"Tell me about {title.lower()}.")
            ids[title] = chat.id
        return ids


def listed(chat_list: ChatList) -> list[str]:
    return [str(chat_list.get_option_at_index(i).prompt) for i in range(chat_list.option_count)]


@run_async
async def test_typing_filters_titles_then_down_enter_opens(tmp_path: Path) -> None:
    ids = store_chats()
    app = chat_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        pane = chat_pane(app)
        sidebar = app.query_one("#chat-sidebar", ChatSidebar)
        chat_list = sidebar.chat_list
        await until(pilot, lambda: chat_list.option_count == len(TITLES), "every chat listed")
        assert listed(chat_list) == TITLES[::-1] and sidebar.filter_input.placeholder == PLACEHOLDER
        chat_list.focus()
        await pilot.press("slash")  # from the list to the filter
        assert app.focused is sidebar.filter_input
        await pilot.press(*"CO")
        await until(pilot, lambda: listed(chat_list) == ["Cooking eggs"], "only the matching title")
        await pilot.press("backspace", "backspace", *"strasse")  # casefold: ß matches ss
        await until(pilot, lambda: listed(chat_list) == ["Straße names"], "the casefolded match")
        await pilot.press("ctrl+a", "ctrl+k", *"zzz")
        await until(pilot, lambda: listed(chat_list) == ["No chat title matches"], "the no-match line")
        assert chat_list.highlighted_chat() is None
        await pilot.press("enter")  # into the list: nothing to open there
        assert app.focused is chat_list and pane.chat_id == ids["Straße names"]
        await pilot.press("escape")  # Esc in the list clears the filter too
        await until(pilot, lambda: len(listed(chat_list)) == len(TITLES), "the whole list back")
        assert sidebar.filter == ""
        sidebar.filter_input.focus()
        await pilot.press(*"egg", "down")
        await until(pilot, lambda: app.focused is chat_list, "the list focused")
        assert chat_list.highlighted_chat() == ids["Cooking eggs"]
        await pilot.press("enter")
        await until(pilot, lambda: pane.chat_id == ids["Cooking eggs"], "the chat opened")
        pane._refresh()  # a redraw of the list (a reply ended, a rename) keeps the filter
        assert listed(chat_list) == ["Cooking eggs"] and sidebar.filter == "egg"


@run_async
async def test_esc_with_an_empty_filter_is_the_panes(tmp_path: Path) -> None:
    """Esc clears a filter; with none, it goes on to the pane (stop, or leave editing the last message)."""
    store_chats()
    app = chat_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        pane = chat_pane(app)
        sidebar = app.query_one(ChatSidebar)
        await until(pilot, lambda: sidebar.chat_list.option_count == len(TITLES), "every chat listed")
        await pilot.press("ctrl+g")  # edit the last message
        assert pane.editing
        sidebar.filter_input.focus()
        await pilot.press("x", "escape")
        assert sidebar.filter == "" and pane.editing  # the first Esc cleared the filter
        await pilot.press("escape")
        assert not pane.editing  # the second was the pane's


@run_async
async def test_a_title_with_control_sequences_is_shown_safe(tmp_path: Path) -> None:
    with ChatStore() as store:
        store.create_chat("evil \x1b]52;c;aGk=\x07title")
    app = chat_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        sidebar = app.query_one(ChatSidebar)
        await until(pilot, lambda: sidebar.chat_list.option_count == 1, "the chat listed")
        sidebar.filter_input.focus()
        await pilot.press(*"title")
        await until(pilot, lambda: listed(sidebar.chat_list) == ["evil title"], "the safe title")


def test_snapshot_filtered_list(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """120x30: the filter holding "o" above the chats whose titles have an o, the newest open."""
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    store_chats()
    app = make_app([Path("models")], chat_backend=FakeBackend)

    async def run_before(pilot: Pilot) -> None:
        sidebar = pilot.app.query_one(ChatSidebar)
        await until(pilot, lambda: sidebar.chat_list.option_count == len(TITLES), "every chat listed")
        sidebar.filter_input.focus()
        await pilot.press("o")
        await until(pilot, lambda: listed(sidebar.chat_list) == ["Cooking eggs", "Lighthouse story"],
                         "the titles with an o")
        for widget in pilot.app.screen.query("TextArea, Input"):
            widget.cursor_blink = False  # type: ignore[attr-defined]

    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)


def test_a_long_forks_title_keeps_its_fork_mark() -> None:
    from tuillm.tui.widgets.chat_list import TITLE_CHARS, short_title

    title = "Write a short poem about the sea"
    fork, chat = short_title(f"{title} (fork)"), short_title(title)
    assert fork == "Write a short… (fork)" and len(fork) <= TITLE_CHARS
    assert chat == "Write a short poem ab…" and fork != chat  # the two are told apart in the list
    assert short_title("Notes (fork)") == "Notes (fork)"  # short titles are whole
    assert short_title("x" * 30 + " (a very long bracket)") == "x" * 21 + "…"  # a long bracket is text


@run_async
async def test_keys_typed_in_one_burst_reach_the_list(tmp_path: Path) -> None:
    # Over SSH "↓ ↓ Enter" may arrive in one read: the keys after the first ↓ act in the list, not the filter.
    from textual import events

    ids = store_chats()
    app = chat_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        pane = chat_pane(app)
        sidebar = app.query_one("#chat-sidebar", ChatSidebar)
        await until(pilot, lambda: sidebar.chat_list.option_count == len(TITLES), "every chat listed")
        sidebar.filter_input.focus()
        await pilot.pause()
        for key in ("down", "down", "enter"):
            app.post_message(events.Key(key, None))
        newest_first = TITLES[::-1]
        await until(pilot, lambda: pane.chat_id == ids[newest_first[1]], "the second chat opened", steps=200)
