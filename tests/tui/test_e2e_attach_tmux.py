"""End to end: attach a file with ``@`` in the real ``tuillm`` binary inside tmux (80x24): the completion list is
drawn above the prompt, Tab takes the file, Enter sends it with the message (its token count said), and the demo
model answers; Ctrl+Q exits cleanly."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.tui.chat_helpers import saved_reply
from tests.tui.test_e2e_chat_tmux import ENV_KEYS
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary
from tuillm.core.chat.store import ChatStore

pytestmark = pytest.mark.slow


def prompt_line(screen: str) -> str:
    """The prompt's text line (between its borders), two lines above the footer's status line."""
    return line_from_bottom(screen, 4)


def test_attach_a_file_with_at_in_a_real_terminal(isolated_home: Path) -> None:
    config = isolated_home / ".config" / "tuillm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[load]\nctx = 1024\n[sampling]\nmax_tokens = 16\ntemperature = 0.0\n")
    work = isolated_home / "project"
    work.mkdir()
    (work / "notes.md").write_text("The secret word is pineapple.\n", encoding="utf-8")
    (work / "notebook.txt").write_text("unused\n", encoding="utf-8")
    env = {k: os.environ[k] for k in ENV_KEYS}
    tmux = Tmux(isolated_home / "exit-status")
    try:
        # Paths after "@" are relative to the folder tuillm was started in.
        tmux.start(["sh", "-c", f"cd {shlex.quote(str(work))} && exec {shlex.quote(tuillm_binary())}"], env)
        tmux.wait_for(lambda s: "Enter sends" in s and "demo" in s and "Quit" in line_from_bottom(s, 1),
                      "the Chat pane ready with the demo model")
        tmux("send-keys", "-t", "main", "-l", "What is the secret word? @not")
        # "@no" already lists both files: wait for the whole text too.
        screen = tmux.wait_for(lambda s: "Tab or Enter attaches" in s and "notes.md" in s and "notebook.txt" in s
                               and "What is the secret word? @not" in s, "the completion list with both files")
        lines = screen.splitlines()
        title = next(i for i, line in enumerate(lines) if "Tab or Enter attaches" in line)
        prompt = next(i for i, line in enumerate(lines) if "What is the secret word? @not" in line)
        assert title < prompt, f"the list is drawn above the prompt:\n{screen}"
        tmux("send-keys", "-t", "main", "Down")  # notebook.txt, then notes.md
        tmux("send-keys", "-t", "main", "Tab")
        tmux.wait_for(lambda s: "@notes.md" in prompt_line(s) and "Tab or Enter attaches" not in s,
                      "notes.md taken into the prompt, the list closed")
        tmux("send-keys", "-t", "main", "Enter")
        tmux.wait_for(lambda s: "attached notes.md" in s, "the attachment's token count")
        tmux.wait_for(lambda _s: saved_reply().strip() != "", "the reply")
        tmux.wait_for(lambda s: "tok/s" in s, "the reply's figures")
        tmux.quit()
    finally:
        tmux.kill()
    with ChatStore() as store:
        (chat,) = store.list_chats()
        user = store.messages(chat.id)[0]
    assert user.content == ("What is the secret word? @notes.md\n\nFile: notes.md\n```markdown\n"
                            "The secret word is pineapple.\n```")
