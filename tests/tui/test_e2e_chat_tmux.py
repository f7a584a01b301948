"""End to end: chat with the demo model in the real ``tuillm`` binary inside tmux (80x24), kill it with SIGKILL in
the middle of a reply, start it again: the conversation and the partial reply are there."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psutil
import pytest

from tests.processes import children_running, command_line
from tests.tui.chat_helpers import saved_reply
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary
from tuillm.core.chat.store import ChatStore

pytestmark = pytest.mark.slow

QUESTION = "Write a very long story about a lighthouse keeper."
ENV_KEYS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS",
            "HF_HUB_OFFLINE")


def plain(text: str) -> str:
    """Words only: Markdown marks (bold, headings, code) are drawn as styles, not characters."""
    return " ".join(re.sub(r"[*#_`>~|│▎▌]", " ", text).split())


def chat_column(screen: str) -> str:
    """The chat's text, as one line of words: at 80 columns the chat list is hidden (below 90 columns it hides
    itself), so the conversation has the whole width."""
    return plain(" ".join(screen.splitlines()))


def first_words(text: str, n: int = 3) -> str:
    return " ".join(plain(text).split()[:n])


def tuillm_process(tmux: Tmux) -> psutil.Process:
    """The tuillm process under the pane's sh wrapper."""
    shell = psutil.Process(int(tmux("display-message", "-p", "-t", "main", "#{pane_pid}").strip()))
    found = children_running(shell, "tuillm")
    assert found, f"no tuillm process under the pane: {[command_line(p) for p in shell.children(recursive=True)]}"
    return found[0]


def test_chat_then_sigkill_mid_reply_then_restart(isolated_home: Path) -> None:
    config = isolated_home / ".config" / "tuillm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[load]\nctx = 1024\n")  # a small context: a quicker load on two cores
    env = {k: os.environ[k] for k in ENV_KEYS}
    first = Tmux(isolated_home / "exit-status-1")
    try:
        first.start([tuillm_binary()], env)
        # Keys are read once the app is mounted: the footer is filled in a frame after the first paint.
        first.wait_for(lambda s: "Enter sends" in s and "demo" in s and "Quit" in line_from_bottom(s, 1),
                       "the Chat pane ready with the demo model")
        first("send-keys", "-t", "main", "-l", QUESTION)
        first.wait_for(lambda s: "lighthouse keeper" in s, "the question typed in the prompt")
        first("send-keys", "-t", "main", "Enter")
        # The reply is saved while it streams (every half second); the screen is at least as far along.
        first.wait_for(lambda _s: saved_reply().strip() != "", "the first saved words of the reply")
        # The screen draws at most every 0.1 s: on a loaded machine it may be a frame behind the database.
        saved = first_words(saved_reply())
        screen = first.wait_for(lambda s: saved in chat_column(s), f"the saved words {saved!r}")
        assert "Assistant …" in screen, f"the reply ended before it could be killed mid-way:\n{screen}"
        assert "You" in screen and "lighthouse keeper" in screen
        process = tuillm_process(first)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        first.wait_for(lambda _s: first.exit_status() is not None, "the killed process' exit status")
        assert first.exit_status() == str(128 + signal.SIGKILL)
    finally:
        first.kill()

    with ChatStore() as store:
        (chat,) = store.list_chats()
        user, reply = store.messages(chat.id)
    assert chat.title == QUESTION and user.content == QUESTION
    assert reply.content.strip() and not reply.complete

    second = Tmux(isolated_home / "exit-status-2")
    try:
        second.start([tuillm_binary()], env)
        # The chat is listed (title cut to the list's width) and opened with the partial reply, marked as such.
        screen = second.wait_for(lambda s: "interrupted" in s, "the interrupted reply after the restart")
        assert "Write a very long story" in screen
        assert first_words(reply.content) in chat_column(screen), screen
        second.quit()
    finally:
        second.kill()
