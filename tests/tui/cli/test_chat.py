"""``tuillm chat`` through the real binary: streamed answers, JSON, the piped REPL, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.gguf_copy import copy_gguf
from tests.tui.chat_helpers import saved_reply
from tests.tui.test_e2e_tmux import Tmux
from tuillm.core.chat.store import ChatStore

TUILLM = str(Path(sys.executable).with_name("tuillm"))
FAST = ["--ctx", "512", "--temp", "0", "--max-tokens", "8"]


def tuillm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], input=stdin, capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuillm: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_prompt_json_and_streamed_text_agree() -> None:
    proc = tuillm("chat", "demo", "--prompt", "Hello!", "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"].strip() and data["prompt"] == "Hello!" and data["model"].endswith(".gguf")
    stats = data["stats"]
    assert 0 < stats["generated_tokens"] <= 8 and stats["prompt_tokens"] > 0 and stats["ttft_s"] > 0
    assert stats["finish_reason"] in ("stop", "length")

    text = tuillm("chat", "demo", "--prompt", "Hello!", *FAST)
    assert text.returncode == 0, text.stderr
    assert text.stdout == data["answer"] + "\n"  # greedy: the same answer, streamed


def test_system_prompt_changes_the_prompt() -> None:
    plain = json.loads(tuillm("chat", "demo", "-p", "Hi", "--json", *FAST).stdout)
    system = json.loads(tuillm("chat", "demo", "-p", "Hi", "--json", "--system",
                               "You are a pirate who answers in rhymes.", *FAST).stdout)
    assert system["stats"]["prompt_tokens"] != plain["stats"]["prompt_tokens"]


def test_piped_repl_keeps_the_conversation_and_saves_it() -> None:
    proc = tuillm("chat", "demo", "--json", "--save", *FAST, stdin="Hello!\n\nWhat is two plus two?\n")
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [t["prompt"] for t in turns] == ["Hello!", "What is two plus two?"]
    # The second turn continues the first: its prompt holds turn one, mostly reused from the KV cache.
    assert turns[1]["stats"]["prompt_tokens"] > turns[0]["stats"]["prompt_tokens"] + turns[0]["stats"][
        "generated_tokens"]
    assert turns[1]["stats"]["cached_tokens"] >= turns[0]["stats"]["prompt_tokens"]
    with ChatStore() as store:
        (chat,) = store.list_chats()
        contents = [(m.role, m.content) for m in store.messages(chat.id)]
    assert contents == [("user", "Hello!"), ("assistant", turns[0]["answer"]),
                        ("user", "What is two plus two?"), ("assistant", turns[1]["answer"])]


def test_piped_repl_streams_text() -> None:
    proc = tuillm("chat", "demo", *FAST, stdin="Hi\nBye\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) >= 2 and proc.stderr == ""


def test_missing_and_corrupt_models(tmp_path: Path, demo_gguf: Path) -> None:
    missing = tmp_path / "nope.gguf"
    assert_one_line_error(tuillm("chat", str(missing), "-p", "hi"), str(missing), "no such file")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\x00garbage" * 1000)
    assert_one_line_error(tuillm("chat", str(junk), "-p", "hi"), str(junk))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(demo_gguf.read_bytes()[:20_000_000])
    assert_one_line_error(tuillm("chat", str(truncated), "-p", "hi"), str(truncated), "truncated")


def test_context_the_machine_cannot_hold_is_refused_before_loading() -> None:
    proc = tuillm("chat", "demo", "-p", "hi", "--ctx", "200000000")
    assert_one_line_error(proc, "needs about", "available")


def test_bad_options(tmp_path: Path) -> None:
    assert_one_line_error(tuillm("chat", "demo", "-p", "hi", "--template", str(tmp_path / "t.jinja")),
                          "t.jinja: no such file")
    assert_one_line_error(tuillm("chat", "demo", "-p", "hi", "--ctx", "4"), "at least 16")
    assert_one_line_error(tuillm("chat", "demo", "-p", "hi", "--lora", str(tmp_path / "a.gguf")), "a.gguf")
    # A trained adapter's folder (PEFT) was "no config.json (not a Hugging Face checkpoint folder)".
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert_one_line_error(tuillm("chat", "demo", "-p", "hi", "--lora", str(tmp_path / "adapter")),
                          "adapter: a folder, not a LoRA adapter GGUF (export one from a trained adapter with "
                          "`tuillm export-lora`)")


@pytest.mark.parametrize(("flags", "words"), [
    (["--temp", "nan"], "--temp: must be a number from 0 to 5, not 'nan'"),
    (["--threads", "-1"], "--threads: must be \"auto\" or a whole number from 1 to 512, not '-1'"),
    (["--threads", "100000"], "not '100000'"),
    (["--batch", "-1"], "--batch: must be a whole number from 1 to 65536, not '-1'"),
    (["--ngl", "lots"], "--n-gpu-layers: must be"),
    (["-n", "0"], "--max-tokens: must be a whole number from 1 to"),
    (["--lora-scale", "inf"], "--lora-scale: must be"),
])
def test_flags_are_checked_by_their_declarations(flags: list[str], words: str) -> None:
    """Load and sampling flags go through core.llama.options' declarations: a value llama.cpp would crash on or
    sample garbage with is refused in one line before anything loads."""
    assert_one_line_error(tuillm("chat", "demo", "-p", "hi", *flags), words)


@pytest.mark.slow
def test_hostile_template_is_one_line_and_override_works(demo_gguf: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = copy_gguf(demo_gguf, tmp_path / "hostile.gguf", {
        "tokenizer.chat_template": f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"})
    assert_one_line_error(tuillm("chat", str(hostile), "-p", "hi", *FAST), "sandbox")
    assert not marker.exists()
    template = tmp_path / "chatml.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}<|im_start|>assistant\n")
    ok = tuillm("chat", str(hostile), "-p", "Hello!", "--template", str(template), "--json", *FAST)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stats"]["generated_tokens"] > 0


@pytest.mark.slow
def test_sigkill_mid_reply_keeps_the_partial_answer(isolated_home: Path) -> None:
    """`--save` streams the reply into the database: a killed process leaves the chat and the text saved so far."""
    import signal
    import time


    proc = subprocess.Popen([TUILLM, "chat", "demo", "--save", "--ctx", "1024", "--max-tokens", "900",
                             "--temp", "0.8", "--seed", "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"Write a very long story about a lighthouse keeper.\n")
    proc.stdin.flush()  # stdin stays open: the REPL waits for more after this reply

    deadline = time.monotonic() + 120
    while not saved_reply().strip() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    printed = proc.stdout.read().decode("utf-8", errors="replace")
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with ChatStore() as store:
        (chat,) = store.list_chats()
        assert chat.title == "Write a very long story about a lighthouse keeper."
        user, reply = store.messages(chat.id)
    assert user.content.startswith("Write a very long story") and not reply.complete
    assert reply.content.strip() and printed.startswith(reply.content)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (the Makefile installs it)")
def test_terminal_repl_commands(isolated_home: Path) -> None:
    # At a terminal, as `ollama run`: /help lists the commands, an unknown one says so, /set parameter changes the
    # conversation's sampling (/show prints it), /clear starts a new conversation (a second chat in the database,
    # holding only what came after it, with the same settings), // sends a leading "/", a block between triple
    # quotes is one message of several lines, /bye ends the chat with status 0.
    tmux = Tmux(isolated_home / "exit-status")
    env = {k: os.environ[k] for k in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")}

    def history() -> str:
        return tmux("capture-pane", "-p", "-S", "-", "-t", "main")

    try:
        tmux.start([TUILLM, "chat", "demo", "--save", *FAST], env)
        tmux.wait_for(lambda s: "Ctrl+D to quit" in s and s.rstrip().endswith(">>>"), "the REPL's prompt")
        for line, shown in (("/help", "start a new conversation"), ("/nope", "unknown command /nope"),
                            ("/set parameter max_tokens 12", "tuillm: max_tokens = 12"),
                            ("/show parameters", "max_tokens       12"), ("Hello!", None),
                            ("/clear", "tuillm: a new conversation"), ("//etc is a folder", None),
                            ('"""Two lines:', None), ('the second."""', None)):
            before = history().count(">>>")  # the scrollback too: earlier prompts scroll off the 24 rows
            tmux("send-keys", "-t", "main", "-l", line)
            tmux("send-keys", "-t", "main", "Enter")
            if line.startswith('"""'):  # the block goes on: the continuation prompt, no reply yet
                tmux.wait_for(lambda s: s.rstrip().endswith("..."), "the continuation prompt")
                continue
            tmux.wait_for(lambda s, n=before, want=shown: s.rstrip().endswith(">>>") and history().count(">>>") > n
                          and (want is None or want in history()), f"the prompt after {line!r}")
        tmux("send-keys", "-t", "main", "-l", "/bye")
        tmux("send-keys", "-t", "main", "Enter")
        tmux.wait_for(lambda _s: tmux.exit_status() is not None, "the REPL ending on /bye")
        assert tmux.exit_status() == "0"
    finally:
        tmux.kill()
    with ChatStore() as store:
        chats = sorted(store.list_chats(), key=lambda chat: chat.id)
        users = [[m.content for m in store.messages(chat.id) if m.role == "user"] for chat in chats]
    assert users == [["Hello!"], ["/etc is a folder", "Two lines:\nthe second."]]
    assert [chat.sampling.max_tokens for chat in chats] == [12, 12]
