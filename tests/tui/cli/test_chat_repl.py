"""The REPL's commands (tui.cli.chat_repl) over a real chat database: /set parameter and /set system change the
stored conversation, values are checked by the options' declarations, /show prints what is set, /clear keeps the
settings, and a multi-line block is cut from its quotes. (The real binary at a terminal: tests/tui/cli/test_chat.py's
tmux test.)"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.cli.test_chat import FAST, TUILLM
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.store import ChatStore
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.tui.cli import chat_repl as repl


@pytest.fixture
def chat() -> Iterator[Conversation]:
    session = FakeBackend(lambda _event: None)  # no reply is asked for: the commands touch the store and n_ctx
    session.load("/models/demo.gguf", LoadOptions(n_ctx=2048, check_memory=False)).result()
    with ChatStore(":memory:") as store:
        yield Conversation.new(session, store, model="/models/demo.gguf", sampling=Sampling(temperature=0.7))
    session.close()


def run(chat: Conversation, line: str) -> tuple[Conversation | None, str]:
    out = io.StringIO()
    return repl.command(chat, line, out), out.getvalue()


def test_set_parameter_checks_and_stores_the_value(chat: Conversation) -> None:
    assert run(chat, "/set parameter temperature 0")[1] == "tuillm: temperature = 0\n"
    run(chat, "/set parameter num_predict 64")  # Ollama's name for max_tokens
    run(chat, "/set parameter seed 5")
    stored = chat.store.get_chat(chat.chat_id).sampling
    assert (stored.temperature, stored.max_tokens, stored.seed) == (0.0, 64, 5)
    run(chat, "/set parameter seed -1")  # as the flag: -1 is random
    assert chat.sampling.seed is None
    for line, words in (("/set parameter temperature hot", "temperature: must be a number from 0 to 5, not 'hot'"),
                        ("/set parameter top_k 2.5", "top_k: must be a whole number"),
                        ("/set parameter warmth 1", "no parameter warmth; known: temperature, top_p"),
                        ("/set parameter temperature", "usage: /set parameter NAME VALUE"),
                        ("/set", "usage: /set parameter NAME VALUE")):
        kept, printed = run(chat, line)
        assert kept is chat and printed.startswith("tuillm: ") and words in printed and printed.count("\n") == 1
    assert chat.sampling.temperature == 0.0  # refused values changed nothing


def test_set_and_show_system_parameters_and_info(chat: Conversation) -> None:
    assert run(chat, "/show system")[1] == "(no system prompt)\n"
    assert run(chat, "/set system Answer in one word.")[1] == "tuillm: system prompt set\n"
    assert chat.store.get_chat(chat.chat_id).system_prompt == "Answer in one word."
    assert run(chat, "/show system")[1] == "Answer in one word.\n"
    run(chat, "/set parameter max_tokens 32")
    shown = run(chat, "/show parameters")[1].splitlines()
    assert [line.split()[0] for line in shown] == ["temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                                                   "max_tokens", "seed"]
    assert "  max_tokens       32" in shown and "  seed             random" in shown
    info = run(chat, "/show info")[1]
    assert "model    demo.gguf" in info and "context  2048 tokens" in info
    assert "usage: /show parameters" in run(chat, "/show license")[1]


def test_clear_keeps_the_settings_and_bye_ends(chat: Conversation) -> None:
    run(chat, "/set system Be brief.")
    run(chat, "/set parameter temperature 0.2")
    fresh, printed = run(chat, "/clear")
    assert printed == "tuillm: a new conversation\n"
    assert fresh is not None and fresh.chat_id != chat.chat_id
    assert (fresh.chat.system_prompt, fresh.sampling.temperature) == ("Be brief.", 0.2)
    assert run(chat, "/bye")[0] is None and run(chat, "/EXIT")[0] is None
    kept, printed = run(chat, "/nope")
    assert kept is chat and printed.startswith("tuillm: unknown command /nope\n") and "/set parameter" in printed


def test_multi_line_blocks() -> None:
    assert repl.opens_block('"""') and repl.opens_block('"""first line')
    assert not repl.opens_block('"""one line"""') and not repl.opens_block("plain")
    assert repl.closes_block('last line"""') and repl.closes_block('"""  ')
    assert repl.block_message(['"""first line', "", 'third"""']) == "first line\n\nthird"
    assert repl.block_message(['"""', "code:", "  x = 1", '"""']) == "code:\n  x = 1"
    assert repl.block_message(['"""one line"""']) == "one line"


def test_ctrl_d_inside_an_open_block_says_the_message_was_not_sent(tmp_path: Path) -> None:
    # At a terminal (a pty as stdin): Ctrl+D after '"""first line' ended the chat, the typed lines gone without a word.
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([TUILLM, "chat", "demo", *FAST], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": str(tmp_path)})
        os.write(master, b'"""first line\n')
        os.write(master, b"\x04")  # Ctrl+D at the start of the continuation line: end of input
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0 and out == ""
    assert err.splitlines()[-1].endswith('tuillm: the message opened with """ was not closed: not sent')
