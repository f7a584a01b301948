"""The chat's own bad inputs: bytes that are not UTF-8 in -p, --system and on the REPL's stdin (refused, one line
each), unreadable --template files, empty messages, control sequences in what the model says; and the Chat pane
with a GGUF whose template spins: Esc stops it and the pane stays usable, Ctrl+Q quits with nothing left running."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.core.gguf_copy import copy_gguf
from tests.hostile.test_templates import NESTED_LOOP, STOP_WITHIN_S, renderers, spinning
from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications, send
from tuillm.core.chat import template
from tuillm.core.chat.events import ContextTrimmed, Token
from tuillm.core.events import Log
from tuillm.tui.cli.chat import _json_line, _Printer

TUILLM = str(Path(sys.executable).with_name("tuillm"))
FAST = [b"--ctx", b"256", b"--temp", b"0", b"--max-tokens", b"4"]
OSC52 = "\x1b]52;c;cHduZWQ=\x07"
HOSTILE_TEXT = f"{OSC52}Paris\x1b[2J\x1b]0;owned\x07 is\x9b31m the\x07 capital\r"


def run(args: list[bytes | str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([TUILLM, "chat", *args], input=stdin, capture_output=True, timeout=300,
                          env=os.environ.copy())


def assert_line(proc: subprocess.CompletedProcess[bytes], line: str, code: int = 1) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.decode() == f"tuillm: {line}\n"


@pytest.mark.parametrize(("args", "line"), [
    ([b"-p", b"\xff\xfe"], "--prompt is not valid UTF-8"),
    ([b"-p", b"caf\xe9"], "--prompt is not valid UTF-8"),  # Latin-1, not UTF-8
    ([b"-p", b"hi \xed\xa0\x80"], "--prompt is not valid UTF-8"),  # an encoded surrogate
    ([b"-p", b"hi", b"--system", b"\xc3"], "--system is not valid UTF-8"),  # a cut-off character
], ids=["ff_fe", "latin1", "surrogate", "system_cut"])
def test_command_line_text_that_is_not_utf8_is_refused(args: list[bytes], line: str) -> None:
    # Refused before anything loads: no model, no database, no renderer.
    assert_line(run([b"demo", *args, *FAST]), line)


@pytest.mark.slow
@pytest.mark.parametrize(("stdin", "line", "answers"), [
    (b"\xff\xfe\n", "stdin line 1 is not valid UTF-8", 0),
    (b"Hello\n\x80oops\nnever read\n", "stdin line 2 is not valid UTF-8", 1),
    (b"Hello", None, 1),  # no final newline: still a line
    (b"\n  \n\r\n", None, 0),  # blank lines are skipped
], ids=["first_line", "second_line", "no_newline", "blank"])
def test_repl_stdin(stdin: bytes, line: str | None, answers: int) -> None:
    proc = run([b"demo", *FAST], stdin=stdin)
    if line is None:
        assert proc.returncode == 0 and proc.stderr == b""
    else:
        assert_line(proc, line)
    assert proc.stdout.count(b"\n") == answers  # each answer ends with a newline


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["", "   \n\t"], ids=["empty", "blank"])
def test_empty_prompt(prompt: str) -> None:
    assert_line(run(["demo", "-p", prompt, *FAST]), "the message is empty")


def test_unreadable_template_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.jinja"
    latin.write_bytes(b"{{ 'caf\xe9' }}")
    assert_line(run(["demo", "-p", "hi", "--template", str(latin)]), f"template {latin}: not UTF-8 text")
    assert_line(run(["demo", "-p", "hi", "--template", str(tmp_path)]), f"template {tmp_path} is a folder, not a file")
    missing = tmp_path / "missing.jinja"
    assert_line(run(["demo", "-p", "hi", "--template", str(missing)]), f"template {missing}: no such file")
    huge = tmp_path / "huge.jinja"
    huge.write_bytes(b"{# #}" * (1 << 19))  # 2.5 MiB: read whole, it would only cost memory; /dev/zero never ends
    assert_line(run(["demo", "-p", "hi", "--template", str(huge)]),
                f"template {huge} is larger than 1 MiB, the limit for a chat template")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: reading it would wait forever
    for special in (fifo, Path("/dev/zero")):
        assert_line(run(["demo", "-p", "hi", "--template", str(special)]),
                    f"template {special} is not a regular file (a pipe, socket or device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "huge.jinja", "latin1.jinja"]


def test_printed_reply_and_notices_carry_no_control_sequences() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = _Printer(out, err, stream_tokens=True)
    # A sequence split over tokens is harmless too: its ESC goes, its rest is plain text.
    for piece in (*HOSTILE_TEXT.split(" "), "\x1b", "]0;x\x07"):
        printer(Token(piece))
    printer(Log(f"model {OSC52}name\nsecond line", "warning"))
    printer(ContextTrimmed(dropped=1, kept=1, message=f"{OSC52}trimmed"))
    assert out.getvalue() == "Parisisthecapital]0;x"
    assert err.getvalue() == "tuillm: warning: model name second line\ntuillm: trimmed\n"


def test_json_answer_keeps_the_text_but_no_raw_control_character() -> None:
    line = _json_line({"answer": HOSTILE_TEXT})
    assert json.loads(line) == {"answer": HOSTILE_TEXT}  # the data is exact
    assert not any(0x00 <= ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in line)  # the terminal sees none


# --- the Chat pane ------------------------------------------------------------------------------------------------
@pytest.fixture
def spinning_gguf(demo_gguf: Path, tmp_path: Path) -> Path:
    return copy_gguf(demo_gguf, tmp_path / "spin.gguf", {"tokenizer.chat_template": NESTED_LOOP})


async def _rendering(pilot, spinning_gguf: Path) -> None:
    """Loads the spinning model and sends a message: returns once the template spins."""
    pane = chat_pane(pilot.app)
    pane.use_model(spinning_gguf)
    await until(pilot, lambda: pane.engine.loaded and not pane.model_loading, "the model loading")
    await send(pilot, "Hi")
    await until(pilot, lambda: pane.busy, "the reply starting")
    await until(pilot, lambda: any(spinning(p) for p in renderers()), "the template spinning")


@pytest.mark.slow
@run_async
async def test_esc_stops_a_spinning_template_and_the_pane_stays_usable(spinning_gguf: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A long budget first, so that it is the Esc that ends the render even on a loaded machine.
    monkeypatch.setattr(template, "TIME_LIMIT_S", 60.0)
    app = chat_app(tmp_path / "models")
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await _rendering(pilot, spinning_gguf)
        t0 = time.monotonic()
        await pilot.press("escape")
        await until(pilot, lambda: not pane.busy, "the reply stopping")
        assert time.monotonic() - t0 < STOP_WITHIN_S
        assert not [p for p in renderers() if spinning(p)]
        assert not [s for s in seen if "failed" in s.lower()]  # a stop is not a failure
        # Usable: the next message is answered with the template's one line once its budget is spent.
        monkeypatch.setattr(template, "TIME_LIMIT_S", 2.0)
        await send(pilot, "Hi again")
        await until(pilot, lambda: pane.busy, "the second reply starting")
        await until(pilot, lambda: not pane.busy, "the second reply ending")
        assert seen[-1] == "Reply failed: chat template (gguf of spin.gguf) took longer than 2 s to render"
        assert app.focused is app.query_one("#chat-prompt")


@pytest.mark.slow
@run_async
async def test_ctrl_q_quits_during_a_spinning_template(spinning_gguf: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template, "TIME_LIMIT_S", 60.0)  # the quit ends the render, not its budget
    app = chat_app(tmp_path / "models")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await _rendering(pilot, spinning_gguf)
        t0 = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - t0 < STOP_WITHIN_S
    assert not [p for p in renderers() if spinning(p)]
