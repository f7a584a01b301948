"""End to end: the layout of the real ``tuillm`` binary in tmux at 80x24: tabs with their F-keys, the chat list
hidden and brought back with Ctrl+L, a reply from the demo model with the status line keeping model, context and
speed, the header keeping the model, and F1's help wrapped inside the terminal. (60x20 is covered by the pilot tests
in test_layout.py and the snapshots.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.tui.test_e2e_chat_tmux import ENV_KEYS
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary

pytestmark = pytest.mark.slow

FILTER = "Filter chats"  # the placeholder of the chat list's filter: on screen only while the list is


def status_has_all(line: str) -> bool:
    """Model, context and speed (the speed in its long or short form) on the status line."""
    return "demo" in line and bool(re.search(r"ctx \d+/\d+", line)) and bool(re.search(r"\d t(ok)?/s", line))


def help_wraps(tmux: Tmux) -> None:
    """F1's rows wrap inside the box: every row of it lies between the box's borders, and a long description goes
    on in a row of its own under the descriptions' column; Esc closes it."""
    tmux("send-keys", "-t", "main", "F1")
    screen = tmux.wait_for(lambda s: "Esc or F1 closes" in s and "╰" in s, "the help")
    lines = screen.splitlines()
    # The box's columns from its corners: the screen behind it (the chat, dimmed) shows on either side.
    top = next(i for i, line in enumerate(lines) if "╭" in line)
    bottom = next(i for i, line in enumerate(lines) if "╰" in line)
    left, right = lines[top].index("╭"), lines[top].index("╮")
    rows = [line[left:right + 1] for line in lines[top + 1:bottom]]
    assert len(rows) > 5 and all(row[0] == "│" and row[-1] == "│" for row in rows), screen
    assert any(re.match(r"│ {10,}\S", row) for row in rows), screen  # a description wrapped, not cut
    tmux("send-keys", "-t", "main", "Escape")
    tmux.wait_for(lambda s: "Esc or F1 closes" not in s, "the help closed")


def ready(screen: str) -> bool:
    return "Enter sends" in screen and "Quit" in line_from_bottom(screen, 1)


def test_layout_at_80_columns(isolated_home: Path) -> None:
    config = isolated_home / ".config" / "tuillm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[load]\nctx = 1024\n")  # a small context: a quicker load on two cores
    env = {k: os.environ[k] for k in ENV_KEYS}
    tmux = Tmux(isolated_home / "exit-status-80")
    try:
        tmux.start([tuillm_binary()], env)
        screen = tmux.wait_for(ready, "the Chat pane")
        tabs = screen.splitlines()[1]
        assert all(f"{title} F{n}" in tabs for n, title in enumerate(("Chat", "Models", "Convert", "Train"), 2)), tabs
        assert FILTER not in screen  # 80 columns: the list is hidden, the chat has the width

        tmux("send-keys", "-t", "main", "-l", "Say hello.")
        tmux.wait_for(lambda s: "Say hello." in s, "the question typed")
        tmux("send-keys", "-t", "main", "Enter")
        screen = tmux.wait_for(lambda s: status_has_all(line_from_bottom(s, 2)), "model, context and speed")
        assert screen.splitlines()[3].rstrip().endswith("demo")  # the header names the model

        tmux("send-keys", "-t", "main", "C-l")
        tmux.wait_for(lambda s: s.splitlines()[3].startswith(FILTER), "the list shown")
        tmux("send-keys", "-t", "main", "C-l")
        tmux.wait_for(lambda s: FILTER not in s, "the list hidden again")
        help_wraps(tmux)
        tmux.quit()
    finally:
        tmux.kill()
