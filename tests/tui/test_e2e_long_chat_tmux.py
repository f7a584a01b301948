"""End to end, the real ``tuillm`` binary in tmux at 80x24: a chat of 1,000 messages opens at its end, and the
selection walks up through messages that were not mounted when it opened, each drawn as it is reached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tui.test_e2e_models_tmux import ENV_KEYS
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary
from tests.tui.widgets.long_chat import seed_long_chat
from tuillm.core.chat.store import ChatStore
from tuillm.tui.widgets.chat_view import WINDOW

pytestmark = pytest.mark.slow

STEPS = 3 * WINDOW  # well past what is mounted when the chat opens


def test_a_thousand_messages_open_at_the_end_and_the_selection_walks_up(isolated_home: Path) -> None:
    with ChatStore() as store:
        seed_long_chat(store, 1000)
    tmux = Tmux(isolated_home / "exit-status")
    try:
        tmux.start([tuillm_binary()], {k: os.environ[k] for k in ENV_KEYS})
        screen = tmux.wait_for(lambda s: "#999 " in s and "Quit" in line_from_bottom(s, 1), "the chat's end shown")
        assert "#0 " not in screen
        tmux("send-keys", "-t", "main", "BTab")  # from the prompt to the messages: the newest selected
        tmux.wait_for(lambda s: "Copy message" in line_from_bottom(s, 1), "the messages focused")
        for _ in range(STEPS):
            tmux("send-keys", "-t", "main", "Up")
        target = f"#{999 - STEPS} "
        screen = tmux.wait_for(lambda s: target in s, "the message reached by the selection on screen")
        assert "#999 " not in screen
        tmux.quit()
    finally:
        tmux.kill()
