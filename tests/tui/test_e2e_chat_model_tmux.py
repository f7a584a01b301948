"""End to end, the real ``tuillm`` binary in tmux at 80x24: a chat started with a model picked in the Models pane
(not the demo) reopens with that model after a restart and its next message goes to it; a draft survives Ctrl+G
(edit the last message, then Esc) and a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tui.test_e2e_models_tmux import ENV_KEYS, row_of
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary
from tuillm.core.chat.store import ChatStore
from tuillm.core.paths import demo_model_path

pytestmark = pytest.mark.slow

QUESTION = "Say hi"
DRAFT = "an unsent thought"


def second_model(folder: Path) -> Path:
    """The demo GGUF under another name (a hard link where the file system allows: no 100 MB copy)."""
    demo = demo_model_path()
    assert demo is not None, "the demo model package is not installed"
    second = folder / "second.gguf"
    try:
        os.link(demo, second)
    except OSError:
        second.write_bytes(demo.read_bytes())
    return second


def header_line(screen: str) -> str:
    """The chat's header ("title · model"), the line that names the chat's model."""
    return next((line for line in screen.splitlines() if " · " in line and "Assistant" not in line), "")


def prompt_text(screen: str) -> str:
    """What the chat prompt holds: the lines inside its box (drawn with ▔ above and ▁ below), "" before it is."""
    lines = screen.splitlines()
    top = max((i for i, line in enumerate(lines) if "▔▔▔▔" in line), default=None)
    bottom = next((i for i, line in enumerate(lines) if "▁▁▁▁" in line and top is not None and i > top), None)
    if top is None or bottom is None:
        return ""
    return " ".join(line.strip("▊▎ ") for line in lines[top + 1:bottom])


def start(tmux: Tmux, argv: list[str]) -> None:
    tmux.start(argv, {k: os.environ[k] for k in ENV_KEYS})
    tmux.wait_for(lambda s: "Quit" in line_from_bottom(s, 1) and " · " in s, "the Chat pane ready")


def reply_done(tmux: Tmux, count: int) -> str:
    """Until ``count`` replies are drawn complete (the header names the model once a reply ends)."""
    return tmux.wait_for(lambda s: s.count("Assistant · second.gguf") >= count and "Assistant …" not in s,
                         f"reply {count} written by second.gguf")


def test_a_chat_keeps_its_model_and_its_draft_across_restarts(isolated_home: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    second = second_model(models)
    config = tmp_path / "config.toml"
    # A small context and short greedy replies: quick on two cores.
    config.write_text(f'[models]\ndirs = ["{models}"]\n[load]\nctx = 512\n[sampling]\ntemperature = 0.0\n'
                      "max_tokens = 8\n")
    argv = [tuillm_binary(), "--config", str(config)]

    first = Tmux(tmp_path / "exit-1")
    try:
        start(first, argv)
        first("send-keys", "-t", "main", "F3")
        first.wait_for(lambda s: row_of(s, "second") is not None, "the second model listed")
        first("send-keys", "-t", "main", "/")
        first.wait_for(lambda s: "Type to filter" in s, "the filter taking the keys")
        first("send-keys", "-t", "main", "-l", "second")
        first.wait_for(lambda s: row_of(s, "demo") is None and row_of(s, "second") is not None, "the filter")
        first("send-keys", "-t", "main", "Enter")  # back to the table
        first.wait_for(lambda s: "i info" in s, "the table taking the keys")
        first("send-keys", "-t", "main", "Enter")  # chat with it: a new chat, the model loaded at once
        # The status line and the header, waited for together: they may be drawn in frames of their own.
        first.wait_for(lambda s: "second.gguf · ctx 0/512" in line_from_bottom(s, 2)
                       and "second.gguf" in header_line(s), "second loaded, named in the header")
        first("send-keys", "-t", "main", "-l", QUESTION)
        first.wait_for(lambda s: QUESTION in prompt_text(s), "the question typed")
        first("send-keys", "-t", "main", "Enter")
        reply_done(first, 1)
        first.quit()
    finally:
        first.kill()
    with ChatStore() as store:
        (chat,) = store.list_chats()
        assert chat.model == str(second) and chat.load_values["n_ctx"] == 512
        assert [(m.role, m.model) for m in store.messages(chat.id)] == [("user", ""), ("assistant", str(second))]

    again = Tmux(tmp_path / "exit-2")
    try:
        start(again, argv)
        screen = again.wait_for(lambda s: "second.gguf" in header_line(s), "the chat reopened with its model")
        assert QUESTION in header_line(screen) and "demo" not in header_line(screen)
        again("send-keys", "-t", "main", "-l", "And again")
        again.wait_for(lambda s: "And again" in prompt_text(s), "the second message typed")
        again("send-keys", "-t", "main", "Enter")
        reply_done(again, 2)
        again("send-keys", "-t", "main", "-l", DRAFT)  # typed, not sent
        again.wait_for(lambda s: DRAFT in prompt_text(s), "the draft typed")
        again("send-keys", "-t", "main", "C-g")  # edit the last message: the prompt holds it
        again.wait_for(lambda s: "And again" in prompt_text(s) and DRAFT not in prompt_text(s), "editing")
        again("send-keys", "-t", "main", "Escape")  # cancel the edit: the draft comes back
        again.wait_for(lambda s: DRAFT in prompt_text(s), "the draft given back")
        again.quit()
    finally:
        again.kill()
    with ChatStore() as store:
        (chat,) = store.list_chats()
        assert chat.draft == DRAFT
        replies = [m for m in store.messages(chat.id) if m.role == "assistant"]
        assert [m.model for m in replies] == [str(second), str(second)]  # the new message went to its model

    third = Tmux(tmp_path / "exit-3")
    try:
        start(third, argv)
        third.wait_for(lambda s: DRAFT in prompt_text(s) and "second.gguf" in header_line(s),
                       "the draft and the chat's model after a restart")
        third.quit()
    finally:
        third.kill()
