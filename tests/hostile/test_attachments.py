"""Hostile attachments and chat imports: binary and huge files, FIFOs and devices (refused without blocking),
symbolic link loops, escape sequences in names and contents, files written to break out of their fence, and
malformed JSON; each is one line, and nothing is sent or created. Property tests cover both readers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from textual.content import Content

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app
from tuillm.core.chat.attachments import (
    AttachmentError,
    attach_mentions,
    collapse_attachments,
    read_attachment,
    with_attachments,
)
from tuillm.core.chat.importer import ChatImportError, import_chat, parse_chat, read_chat_file
from tuillm.core.chat.store import ChatStore
from tuillm.tui.widgets.chat_prompt import ChatPrompt
from tuillm.tui.widgets.path_complete import PathCompletions

TUILLM = str(Path(sys.executable).with_name("tuillm"))
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m"
BINARY = "is a binary file: only text files can be attached"
NOT_UTF8 = "is not UTF-8 text (Latin-1?): only UTF-8 text files can be attached"


def tuillm(*args: str) -> subprocess.CompletedProcess[str]:
    # The timeout only makes a hang fail the test (a FIFO opened for reading waits for a writer).
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "\x1b" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize(("data", "why", "refusal"), [
    (b"\x7fELF\x02\x01\x01\x00\x00", "an executable", BINARY),
    (b"plain text\x00with a NUL", "a NUL in text", BINARY),
    (b"\x89PNG\r\n\x1a\n", "an image", BINARY),
    ("résumé".encode("utf-16"), "UTF-16", BINARY),
    (b"caf\xe9", "Latin-1", NOT_UTF8),  # text, in another encoding: not called binary
    (b"cut \xe2\x82", "a cut-off character", NOT_UTF8),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_binary_files_are_refused_with_one_line(tmp_path: Path, data: bytes, why: str, refusal: str) -> None:
    (tmp_path / "file").write_bytes(data)
    with pytest.raises(AttachmentError) as caught:
        read_attachment(tmp_path / "file", name="file")
    assert str(caught.value) == f"file {refusal}", why


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.log"
    with huge.open("wb") as f:
        f.truncate(64 << 30)  # sparse: 64 GiB that reading would take minutes and all the memory
    with pytest.raises(AttachmentError, match=r"^huge.log is larger than 1 MiB, the limit for an attachment$"):
        read_attachment(huge, name="huge.log")


def test_fifos_devices_folders_and_link_loops_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # no writer: a plain open() for reading would wait forever
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    cases = {
        str(fifo): "is not a regular file (a pipe, socket or device)",
        "/dev/zero": "is not a regular file (a pipe, socket or device)",
        str(tmp_path): "is a folder, not a file",
        str(tmp_path / "loop_a"): ": a loop of symbolic links",
    }
    for path, error in cases.items():
        with pytest.raises(AttachmentError) as caught:
            read_attachment(path)
        assert str(caught.value) == f"{path}{' ' if error[0] != ':' else ''}{error}"
    # The same through the CLI: one line, exit 1, nothing loaded (it ends at once rather than waiting on the FIFO).
    assert one_line(tuillm("chat", "demo", "-p", "read it", "--attach", str(fifo))) == (
        f"tuillm: {fifo} is not a regular file (a pipe, socket or device)")


def test_a_link_to_a_text_file_attaches_the_file(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("real\n", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert read_attachment(tmp_path / "link.txt").text == "real\n"


def test_escape_sequences_in_names_never_reach_a_message_or_an_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"evil{ESCAPES}.txt"
    Path(name).write_text(f"contents {ESCAPES}\n", encoding="utf-8")
    message, (attachment,) = attach_mentions(f"see @{name}")
    assert attachment.name == "evil.txt"  # as the model and the notification name it
    header = message.split("\n\n", 1)[1].splitlines()[0]
    assert header.startswith("File: evil") and "\x1b" not in header and "\x9b" not in header
    # The contents go to the model as they are (it reads the file); every view of them passes through safe_text.
    assert f"contents {ESCAPES}" in message
    Path(f"bad{ESCAPES}.bin").write_bytes(b"\x00\x01")
    with pytest.raises(AttachmentError) as caught:
        attach_mentions(f"see @bad{ESCAPES}.bin")
    assert "\x1b" not in str(caught.value) and "\x9b" not in str(caught.value)
    line = one_line(tuillm("chat", "demo", "-p", "x", "--attach", f"bad{ESCAPES}.bin"))
    assert line.endswith(BINARY)


FENCE_TEXT = st.text(alphabet=st.sampled_from(["`", "~", " ", "\n", "a", "#", ">", "-", "*"]), max_size=200)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=FENCE_TEXT)
def test_no_file_can_break_out_of_its_fence(tmp_path: Path, text: str) -> None:
    path = tmp_path / "attack.md"
    path.write_text(text, encoding="utf-8")
    block = read_attachment(path).block()
    tokens = MarkdownIt("commonmark").parse(block)
    fences = [t for t in tokens if t.type == "fence"]
    # One block, holding the whole file: nothing after it is outside, nothing in it closes it early.
    assert len(fences) == 1 and tokens[-1] is fences[0]
    assert fences[0].content == (text if text.endswith("\n") or not text else text + "\n")
    # The chat view's one-line form takes the whole block, whatever the file holds.
    lines = fences[0].content.count("\n")
    assert collapse_attachments(with_attachments("Q", [read_attachment(path, name="attack.md")])) == (
        f"Q\n\n📎 attack.md · {lines} line{'' if lines == 1 else 's'}, {len(fences[0].content.encode())} bytes")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_are_text_or_refused_as_binary(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any"
    path.write_bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        with pytest.raises(AttachmentError, match=f"{re.escape(BINARY)}|{re.escape(NOT_UTF8)}"):
            read_attachment(path)
    else:
        assert read_attachment(path).text == text.removeprefix("\ufeff")


@pytest.mark.parametrize(("content", "error"), [
    (b"", "is not JSON (line 1, column 1: Expecting value)"),
    (b"[" * 200_000 + b"]" * 200_000, ": the JSON is nested too deeply"),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
     ": message 0: the content is not valid Unicode (a lone surrogate)"),
    (b'\xff\xfe[\x00]\x00', "is not UTF-8 text"),
    (b'{"messages": [{"role": "user", "content": "x"}], "title": "\\u001b]0;owned\\u0007"}', None),
    (b'[{"role": "user\\u001b[2J", "content": "x"}]',
     ': message 0: role "user\\u001b[2J" is not one of system, user, assistant'),
])
def test_malformed_imports_are_one_line(tmp_path: Path, content: bytes, error: str | None) -> None:
    path = tmp_path / "chat.json"
    path.write_bytes(content)
    if error is None:  # accepted: the title is kept without its escape sequences
        assert "\x1b" not in read_chat_file(path).title
        return
    with pytest.raises(ChatImportError) as caught:
        read_chat_file(path)
    assert str(caught.value) == f"{path}{' ' if not error.startswith(':') else ''}{error}"


def test_import_of_a_fifo_or_a_folder_does_not_block_and_creates_nothing(tmp_path: Path) -> None:
    fifo = tmp_path / "chat.json"
    os.mkfifo(fifo)
    assert one_line(tuillm("import-chat", str(fifo))) == (
        f"tuillm: {fifo} is not a regular file (a pipe, socket or device)")
    assert one_line(tuillm("import-chat", str(tmp_path))) == f"tuillm: {tmp_path} is a folder, not a file"
    with ChatStore() as store:
        assert store.list_chats() == []


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["role", "content", "messages", "type", "text", "title", "params", "model",
                                         "stats", "complete", "system_prompt", "tool_calls"]), inner, max_size=5),
                    max_leaves=30)
ROLE = st.sampled_from(["system", "user", "assistant", "developer", "tool", "", "User"])
MESSAGE = st.fixed_dictionaries({"role": ROLE, "content": st.one_of(
    st.text(max_size=30), st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]),
                                                          "text": st.text(max_size=10)}), max_size=3), JSON)})


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(JSON, st.lists(MESSAGE, max_size=5), st.fixed_dictionaries({"messages": st.lists(MESSAGE,
                                                                                                          max_size=5)})))
def test_any_json_is_a_chat_or_one_line(value: object) -> None:
    try:
        chat = parse_chat(value)
    except ChatImportError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert chat.messages and all(m.role in ("system", "user", "assistant") for m in chat.messages)
    assert all(isinstance(m.content, str) for m in chat.messages)
    with ChatStore(":memory:") as store:  # what was accepted can be stored
        created = import_chat_value(store, chat)
        assert len(store.messages(created)) == len(chat.messages)


def import_chat_value(store: ChatStore, chat) -> int:
    from tuillm.core.chat.importer import save_chat

    return save_chat(store, chat).id


def test_import_chat_through_a_path_with_escapes_in_its_name(tmp_path: Path) -> None:
    path = tmp_path / f"x{ESCAPES}.json"
    path.write_text(json.dumps([{"role": "user", "content": "hello"}]), encoding="utf-8")
    with ChatStore(tmp_path / "db.sqlite3") as store:
        assert import_chat(store, path).title == "hello"
    path.write_text("{", encoding="utf-8")
    line = one_line(tuillm("import-chat", str(path)))
    assert line.startswith("tuillm: ") and "is not JSON" in line


@run_async
async def test_hostile_file_names_in_the_prompt_are_shown_as_plain_text(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Markup and escape sequences in file names, listed and named as plain text.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("[bold]b.txt", f"e{ESCAPES}.txt"):
        (work / name).write_text("x\n", encoding="utf-8")
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(ChatPrompt)
        prompt.focus()
        await pilot.press("@")
        await until(pilot, lambda: len(app.query(PathCompletions)) == 1, "the completion list")
        listed = app.query_one(PathCompletions)
        shown = [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)]
        # Markup as plain text; a name with escape sequences is not offered: it could not go into the prompt,
        # which keeps no control character (an OSC in a completed name retitled the terminal)
        assert shown == ["[bold]b.txt"]
        prompt.text = "see @[bold]b.txt "
        await pilot.pause()
        # Kept as Content, so the brackets are text (read as markup, "[bold]" would vanish); the getter gives markup.
        assert Content.from_markup(prompt.border_subtitle).plain == "attaching [bold]b.txt (~1 token)"
