"""End to end: branches in the real ``tuillm`` binary inside tmux (80x24) with the demo model. A reply answered
again shows ‹2/2›; Alt+← brings back ‹1/2› with the first reply's text; f in the messages view forks the chat into
a new one holding the conversation up to there, listed with the original."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from tests.tui.test_e2e_chat_tmux import ENV_KEYS, plain
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary
from tuillm.core.chat.store import ChatStore, default_path

pytestmark = pytest.mark.slow

QUESTION = "Say one word."


def replies() -> list[tuple[int, str]]:
    """The complete replies saved so far, oldest first (read with plain sqlite3, as another process would)."""
    if not default_path().exists():
        return []
    db = sqlite3.connect(default_path())
    try:
        rows = db.execute("SELECT id, content FROM messages WHERE role = 'assistant' AND complete = 1 "
                          "ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        rows = []
    finally:
        db.close()
    return rows


def words(text: str) -> list[str]:
    """The words of a screen or a reply, letters and digits only: Markdown marks (a list's "-" is drawn as "•"),
    punctuation and frames aside."""
    return [w for w in (re.sub(r"\W", "", word) for word in plain(text).split()) if w]


def shows(screen: str, reply: str) -> bool:
    """The reply's first words are on the screen (a sampled reply may be empty: then there is nothing to see)."""
    on_screen = words(screen)
    return all(word in on_screen for word in words(reply)[:3])


def test_regenerate_alternatives_and_fork_in_a_real_terminal(isolated_home: Path) -> None:
    config = isolated_home / ".config" / "tuillm" / "config.toml"
    config.parent.mkdir(parents=True)
    # A small context loads quicker on two cores; short replies, sampled (answering again gives another one).
    config.write_text("[load]\nctx = 1024\n\n[sampling]\ntemperature = 1.0\nmax_tokens = 6\n")
    env = {k: os.environ[k] for k in ENV_KEYS}
    tmux = Tmux(isolated_home / "exit-status")
    try:
        tmux.start([tuillm_binary()], env)
        tmux.wait_for(lambda s: "Enter sends" in s and "demo" in s and "Quit" in line_from_bottom(s, 1),
                      "the Chat pane ready with the demo model")
        tmux("send-keys", "-t", "main", "-l", QUESTION)
        tmux.wait_for(lambda s: QUESTION in s, "the question typed in the prompt")
        tmux("send-keys", "-t", "main", "Enter")
        tmux.wait_for(lambda _s: len(replies()) == 1, "the first reply saved")
        (_, first), = replies()
        tmux.wait_for(lambda s: shows(s, first) and "Assistant …" not in s, "the first reply shown")

        tmux("send-keys", "-t", "main", "C-r")  # answer again: the first reply is kept as an alternative
        tmux.wait_for(lambda _s: len(replies()) == 2, "the second reply saved")
        (_, second) = replies()[1]
        tmux.wait_for(lambda s: "‹2/2›" in s and shows(s, second), "the new reply, marked ‹2/2›")

        tmux("send-keys", "-t", "main", "M-Left")  # from the prompt: the newest point with alternatives
        tmux.wait_for(lambda s: "‹1/2›" in s and shows(s, first), "the first reply back, marked ‹1/2›")

        tmux("send-keys", "-t", "main", "BTab")  # to the messages view: the newest message (the reply) selected
        # As a user would, f only once the view has the focus (its keys on the hint line, the prompt empty).
        tmux.wait_for(lambda s: "Copy message" in line_from_bottom(s, 1) and "Enter sends" in s,
                      "the messages view focused")
        tmux("send-keys", "-t", "main", "f")
        tmux.wait_for(lambda s: "(fork)" in s, "the forked chat opened")
        tmux("send-keys", "-t", "main", "C-l")  # the chat list (hidden below 90 columns): both chats
        # Four times: the header, the message, and the two chats in the list.
        tmux.wait_for(lambda s: s.count("Say one") >= 4, "the fork listed with the original")
        tmux.quit()
    finally:
        tmux.kill()

    with ChatStore() as store:
        forked, original = store.list_chats()
        assert forked.title == f"{QUESTION} (fork)" and original.title == QUESTION
        assert [(m.role, m.content) for m in store.messages(forked.id)] == [("user", QUESTION), ("assistant", first)]
        shown = store.messages(original.id)
        assert [m.content for m in shown] == [QUESTION, first] and shown[1].alternatives == (1, 2)
