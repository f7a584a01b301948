"""Attachments and import in the Chat pane, driven with Pilot at 80x24: ``@`` completion in the prompt, a file sent
with its token count (the real demo model counts it), refusals that send nothing, the context warning, and the
palette's "Import chat…"."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SHORT, SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tuillm.core.chat.store import ChatStore
from tuillm.tui.screens.import_chat import ImportChatScreen
from tuillm.tui.widgets.chat_messages import ChatView
from tuillm.tui.widgets.chat_prompt import ChatPrompt
from tuillm.tui.widgets.path_complete import PathCompletions


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a few files: paths after "@" are relative to it."""
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "main.py").write_text("print('hi')\n", encoding="utf-8")
    (work / "notes.md").write_text("# Notes\n\nThe capital of France is Paris.\n", encoding="utf-8")
    (work / "notes_old.txt").write_text("old\n", encoding="utf-8")
    (work / ".hidden").write_text("h\n", encoding="utf-8")
    (work / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    monkeypatch.chdir(work)
    return work


def completions(app) -> list[str]:
    found = app.query(PathCompletions)
    return [c.value for c in found.first().values] if found else []


def user_messages(app) -> list[str]:
    with ChatStore() as store:
        return [m.content for chat in store.list_chats() for m in store.messages(chat.id) if m.role == "user"]


async def shows(pilot, expected: list[str]) -> None:
    """Until the completion list shows ``expected`` ([]: no list); it is filled from a worker thread."""
    await until(pilot, lambda: completions(pilot.app) == expected, f"the completions {expected}")


@run_async
async def test_at_completes_paths_as_typed(tmp_path: Path, workdir: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(ChatPrompt)
        prompt.focus()
        await pilot.press(*"Read @")
        await shows(pilot, ["blob.bin", "notes.md", "notes_old.txt", "src/"])  # no hidden files
        await pilot.press("n", "o")
        await shows(pilot, ["notes.md", "notes_old.txt"])  # typing filters
        await pilot.press("down", "tab")
        await shows(pilot, [])
        assert prompt.text == "Read @notes_old.txt "
        await pilot.press(*"and @s")
        await shows(pilot, ["src/"])
        await pilot.press("enter")  # a folder: taken, and its entries listed (Enter did not send)
        await shows(pilot, ["src/main.py"])
        assert prompt.text == "Read @notes_old.txt and @src/"
        await pilot.press("enter")
        await shows(pilot, [])
        assert prompt.text == "Read @notes_old.txt and @src/main.py "
        # Under the prompt: what Enter will attach, with a size estimate (4 bytes a token).
        assert prompt.border_subtitle == "attaching notes_old.txt (~1 token) · src/main.py (~3 tokens)"
        assert user_messages(app) == []  # nothing was sent by the Enters that took a completion
        await pilot.press(*"@.h")
        await shows(pilot, [".hidden"])  # asked for with a leading "."
        assert prompt.border_subtitle.endswith("· .h: not found")
        await pilot.press("escape")  # closes the list, and only that: the prompt keeps its text
        await shows(pilot, [])
        assert prompt.text.endswith("@.h") and app.focused is prompt and not chat_pane(app).busy
        await pilot.press("i")  # the same "@": it stays closed (decided at once, with no listing to wait for)
        await pilot.pause()
        assert not app.query(PathCompletions)
        await pilot.press("space", "@")  # a new "@" opens it again
        await until(pilot, lambda: "notes.md" in completions(app), "the list for a new @")
        app.set_focus(None)  # the prompt loses the focus: the list goes, the text stays
        await shows(pilot, [])
        assert prompt.text.endswith("@.hi @")


@run_async
async def test_a_closed_list_opens_again_for_a_new_at_in_the_same_place(tmp_path: Path, workdir: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(ChatPrompt)
        prompt.focus()
        await pilot.press("@")
        await shows(pilot, ["blob.bin", "notes.md", "notes_old.txt", "src/"])
        await pilot.press("escape", "backspace")
        await shows(pilot, [])
        await pilot.press("@")  # column 0 again: it stayed closed there for good
        await shows(pilot, ["blob.bin", "notes.md", "notes_old.txt", "src/"])


@run_async
async def test_no_control_character_enters_the_prompt(tmp_path: Path, workdir: Path) -> None:
    # The prompt draws its text as it is: an OSC in a name or a paste reached the terminal (it retitled it)
    (workdir / "tt\x1b]0;PWNED\x07.txt").write_text("hello\n")
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(ChatPrompt)
        prompt.focus()
        await pilot.press(*"see @t")
        await pilot.pause(0.3)
        assert completions(app) == []  # a name that could not be typed is not offered
        prompt.clear()
        prompt.insert("red \x1b[31mtext\x1b[0m and \x9b2J\r\nnext\tline")
        assert prompt.text == "red text and \nnext\tline"
        prompt.load_text("draft \x1b]52;c;aGk=\x07kept")
        assert prompt.text == "draft kept"


@run_async
async def test_an_attached_file_is_sent_with_its_token_count(tmp_path: Path, workdir: Path) -> None:
    app = chat_app(tmp_path, ctx=1024)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = SHORT
        seen = record_notifications(app)
        await send(pilot, "What is the capital? @notes.md")
        await wait_idle(pilot)
        # Before the model loaded, the count was an estimate.
        assert any(line.startswith("Attach: attached notes.md (~") for line in seen), seen
        sent = user_messages(app)
        assert sent == ["What is the capital? @notes.md\n\nFile: notes.md\n```markdown\n# Notes\n\nThe capital of "
                        "France is Paris.\n```"]
        bubbles = app.query_one(ChatView).bubbles
        assert [b.role for b in bubbles] == ["user", "assistant"] and bubbles[0].content == sent[0]
        # Now the model counts: the number said is the block's tokens as its template renders them.
        seen.clear()
        await send(pilot, "And this one? @src/main.py")
        await wait_idle(pilot)
        block = "File: src/main.py\n```python\nprint('hi')\n```"
        empty = pane.engine.count_tokens([{"role": "user", "content": ""}]).result()
        tokens = pane.engine.count_tokens([{"role": "user", "content": block}]).result() - empty
        assert f"Attach: attached src/main.py ({tokens} tokens)" in seen, seen
        assert user_messages(app)[-1] == f"And this one? @src/main.py\n\n{block}"


@run_async
async def test_a_bad_attachment_sends_nothing(tmp_path: Path, workdir: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        for text, error in [("look @blob.bin", "Attach: blob.bin is a binary file: only text files can be attached"),
                            ("look @src", "Attach: src is a folder, not a file"),
                            ("look @nothere.txt", "Attach: nothere.txt: no such file")]:
            seen.clear()
            await send(pilot, text)
            await pilot.pause()
            assert seen == [error]
            assert app.query_one(ChatPrompt).text == text  # kept, to fix the path
        assert user_messages(app) == [] and not pane.engine.loaded and pane.chat_id is None
        # An "@" that is not a path is text: sent as it is.
        pane.draft_sampling = SHORT
        await send(pilot, "Say hi to @everyone")
        await wait_idle(pilot)
        assert user_messages(app) == ["Say hi to @everyone"]


@run_async
async def test_a_message_that_would_overflow_the_context_is_held_back_once(tmp_path: Path, workdir: Path) -> None:
    (workdir / "long.txt").write_text("All work and no play makes Jack a dull boy.\n" * 40, encoding="utf-8")
    app = chat_app(tmp_path, ctx=512)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = replace(SHORT, max_tokens=200)
        seen = record_notifications(app)
        await send(pilot, "Summarize @long.txt")
        await pilot.pause()
        warnings = [line for line in seen if line.startswith("Too long for the context:")]
        assert len(warnings) == 1, seen
        assert "about" in warnings[0] and "(512 - 200 for the reply)" in warnings[0]  # an estimate: no model yet
        assert user_messages(app) == [] and app.query_one(ChatPrompt).text == "Summarize @long.txt"
        await pilot.press("enter")  # again: sent as it is
        await wait_idle(pilot)
        assert user_messages(app)[0].startswith("Summarize @long.txt\n\nFile: long.txt\n")


@run_async
async def test_a_message_longer_than_the_whole_context_is_not_sent(tmp_path: Path) -> None:
    app = chat_app(tmp_path, ctx=512)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = SHORT
        seen = record_notifications(app)
        await send(pilot, "Hi")  # the model loads
        await wait_idle(pilot)
        seen.clear()
        long = "word " * 800  # ~800 tokens, past the whole 512-token context
        app.query_one(ChatPrompt).load_text(long)
        await pilot.press("enter")
        await until(pilot, lambda: any(line.startswith("Too long for the context:") for line in seen), "the refusal")
        assert "longer than the whole context (512)" in seen[-1]
        assert not any("left out" in line or "Reply failed" in line for line in seen), seen
        assert user_messages(app) == ["Hi"] and app.query_one(ChatPrompt).text == long  # kept in the prompt


@run_async
async def test_import_chat_from_the_palette_opens_it(tmp_path: Path) -> None:
    good = tmp_path / "exported.json"
    good.write_text(json.dumps({"messages": [{"role": "user", "content": "What is 2+2?"},
                                             {"role": "assistant", "content": "4"}]}), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"role": "user", "content": [{"type": "image_url"}]}]), encoding="utf-8")
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        for path in (bad, good):
            pane.action_import_chat()
            await until(pilot, lambda: isinstance(app.screen, ImportChatScreen)
                             and bool(app.screen.query("#import-chat-input")), "the import dialog")
            app.screen.query_one("#import-chat-input").value = str(path)
            await pilot.press("enter")
            await until(pilot, lambda: not isinstance(app.screen, ImportChatScreen), "the dialog closing")
            await pilot.pause()
        assert any(line.startswith("Import: ") and "bad.json: message 0: content part 0 is of type \"image_url\""
                   in line for line in seen), seen
        assert "Import: imported What is 2+2?" in seen
        bubbles = app.query_one(ChatView).bubbles
        assert [(b.role, b.content) for b in bubbles] == [("user", "What is 2+2?"), ("assistant", "4")]
        with ChatStore() as store:
            assert [c.title for c in store.list_chats()] == ["What is 2+2?"] and pane.chat_id is not None
        assert "What is 2+2?" in str(app.query_one("#chat-header").content)


@run_async
async def test_export_chat_from_the_palette_writes_it_and_asks_before_replacing(tmp_path: Path) -> None:
    from tuillm.tui.screens.confirm import ConfirmScreen
    from tuillm.tui.screens.export_chat import ExportChatScreen

    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]))
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        pane.action_export_chat()  # a new chat: nothing to write
        assert seen[-1] == "Export: nothing to export yet: this chat has no message"
        pane.action_import_chat()
        await until(pilot, lambda: bool(app.screen.query("#import-chat-input")), "the import dialog")
        app.screen.query_one("#import-chat-input").value = str(chat)
        await pilot.press("enter")
        await until(pilot, lambda: pane.chat_id is not None and "imported" in seen[-1], "the import")

        async def export(path: Path) -> None:
            pane.action_export_chat()
            await until(pilot, lambda: isinstance(app.screen, ExportChatScreen)
                        and bool(app.screen.query("#export-chat-input")), "the export dialog")
            app.screen.query_one("#export-chat-input").value = str(path)
            await pilot.press("enter")
            await pilot.pause()

        md = tmp_path / "out.md"
        await export(md)
        assert seen[-1] == f"Export: exported to {md}" and "## User\n\nWhat is 2+2?" in md.read_text()
        md.write_text("keep me")
        await export(md)  # exists: asked, and "n" keeps it
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")
        assert md.read_text() == "keep me"
        await export(md)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await until(pilot, lambda: md.read_text() != "keep me", "the file replaced")
        with ChatStore() as store:
            database = store.path
        await export(database)  # the chat database itself is never written over
        assert seen[-1] == f"Export: {database}: that is the chat database itself"
        await export(tmp_path / "no-folder" / "x.md")
        assert isinstance(app.screen, ExportChatScreen)
        assert seen[-1] == f"Export: {tmp_path / 'no-folder'}: no such folder"
