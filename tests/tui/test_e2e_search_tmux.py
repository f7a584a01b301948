"""End to end, the real ``tuillm`` binary in tmux at 80x24: Ctrl+F finds a word that only an older chat holds, and
Enter opens that chat with the message on screen; the chat list's filter narrows the list as the user types."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tui.test_e2e_models_tmux import ENV_KEYS
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary
from tuillm.core.chat.store import ChatStore

pytestmark = pytest.mark.slow

WORD = "Geirangerfjord"


def seed() -> None:
    """An older chat that holds the word, then newer ones that do not (the newest opens at start)."""
    with ChatStore() as store:
        older = store.create_chat("Trip to Norway")
        store.add_message(older.id, "user", "Where can I see the best fjords?")
        store.add_message(older.id, "assistant", f"Take the ferry through the {WORD}: waterfalls on both sides.")
        for title, question in (("Cooking eggs", "How long do I boil an egg?"),
                                ("Rust lifetimes", "What does 'a mean in a signature?")):
            chat = store.create_chat(title)
            store.add_message(chat.id, "user", question)
            store.add_message(chat.id, "assistant", "Here is a short answer.")


def header(screen: str) -> str:
    """The open chat's header line ("title · model")."""
    return next((line for line in screen.splitlines() if " · " in line and "demo" in line), "")


def test_search_opens_an_older_chat_at_the_message(isolated_home: Path) -> None:
    seed()
    tmux = Tmux(isolated_home / "exit-status")
    try:
        tmux.start([tuillm_binary()], {k: os.environ[k] for k in ENV_KEYS})
        screen = tmux.wait_for(lambda s: "Quit" in line_from_bottom(s, 1) and "Rust lifetimes" in header(s),
                               "the newest chat open")
        assert WORD not in screen
        tmux("send-keys", "-t", "main", "C-f")
        tmux.wait_for(lambda s: "Search all chats" in s, "the search dialog")
        tmux("send-keys", "-t", "main", "-l", "geiranger")  # lower case, and the start of the word
        tmux.wait_for(lambda s: "1 message, best match first" in s and "Trip to Norway" in s and WORD in s,
                      "the one result, with its chat and the word")
        tmux("send-keys", "-t", "main", "Enter")
        # The message found is selected in the view, which has the focus: its keys (c copies it) are in the footer.
        screen = tmux.wait_for(lambda s: "Search all chats" not in s and "Trip to Norway" in header(s)
                               and WORD in s and "Copy message" in line_from_bottom(s, 1),
                               "the older chat open, the message found on screen and selected")
        assert "Here is a short answer" not in screen  # the newer chat's messages are gone

        # The chat list's filter: hidden at 80 columns, Ctrl+L brings the list, / goes to its filter.
        tmux("send-keys", "-t", "main", "C-l")
        tmux.wait_for(lambda s: "Filter chats" in s and "Rename" in line_from_bottom(s, 1),
                      "the chat list with its filter, the list focused")
        tmux("send-keys", "-t", "main", "/")
        # Keys typed before the focus has moved go to the widget left (Textual forwards them as they come).
        tmux.wait_for(lambda s: "Rename" not in line_from_bottom(s, 1), "the filter focused")
        tmux("send-keys", "-t", "main", "-l", "egg")
        screen = tmux.wait_for(lambda s: "Cooking eggs" in s and "Rust lifetimes" not in s, "the filtered list")
        assert "Trip to Norway" in header(screen)  # filtering does not switch chats
        tmux("send-keys", "-t", "main", "Enter")  # into the list ...
        tmux.wait_for(lambda s: "Rename" in line_from_bottom(s, 1), "the list focused")
        tmux("send-keys", "-t", "main", "Enter")  # ... and open the highlighted chat
        tmux.wait_for(lambda s: "Cooking eggs" in header(s), "the filtered chat open")
        tmux.quit()
    finally:
        tmux.kill()
