"""The Chat pane's keys, dialogs and bad input: copy, options, chat list, Models → Chat, and errors that must be
notifications (never a traceback) with the app still up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.tui.app_helpers import run_async, until, wait_for_catalog
from tests.tui.chat_helpers import (
    SHORT,
    SIZE,
    chat_app,
    chat_pane,
    record_notifications,
    send,
    wait_idle,
)
from tests.tui.fake_backend import FakeBackend, gated_backend
from tuillm.core.chat.store import ChatStore, default_path
from tuillm.core.llama.options import SAMPLING_OPTIONS, Sampling
from tuillm.core.options import OptionError, option_map
from tuillm.tui.screens.chat_options import SEED_FIELD, ChatOptionsScreen, form_values, parse_sampling
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.screens.rename import RenameScreen
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatView, last_code_block
from tuillm.tui.widgets.status_line import NO_MODEL, StatusLine

REPLY = "Here is the script:\n\n```python\nprint('first')\n```\n\nAnd the fix:\n\n```sh\necho done\n```\n"


def stored_chat(title: str = "Scripts") -> int:
    with ChatStore() as store:
        chat = store.create_chat(title, params=SHORT.to_json())
        store.add_message(chat.id, "user", "Write a script.")
        store.add_message(chat.id, "assistant", REPLY)
        return chat.id


def test_last_code_block() -> None:
    assert last_code_block(REPLY) == "echo done"
    assert last_code_block("no code here") is None
    assert last_code_block("```\nunfinished\nline") == "unfinished\nline"  # a reply stopped inside a block
    assert last_code_block("~~~js\nlet a = 1;\n~~~\n") == "let a = 1;"


def test_options_form_is_the_declared_sampling_options() -> None:
    """The dialog's fields are SAMPLING_OPTIONS (and the seed), checked by the same rules as the settings file and
    `tuillm chat`'s flags: top_p = 3 is refused here as it is there."""
    values = form_values(Sampling())
    assert list(values) == [option.name for option in SAMPLING_OPTIONS] + [SEED_FIELD]
    assert parse_sampling(values) == Sampling()
    assert parse_sampling({**values, "top_p": "0.5", SEED_FIELD: "7"}) == Sampling(top_p=0.5, seed=7)
    by_name = option_map(SAMPLING_OPTIONS)
    for name, text in (("top_p", "3"), ("temperature", "nan"), ("max_tokens", "0"), ("top_k", "1.5")):
        with pytest.raises(ValueError) as info:
            parse_sampling({**values, name: text})
        option = by_name[name]
        assert str(info.value) == option.refusal(option.title, text)
    with pytest.raises(OptionError):
        Sampling(top_p=3)  # what the settings file and the flags build
    with pytest.raises(ValueError, match="Seed"):
        parse_sampling({**values, SEED_FIELD: "-2"})


@run_async
async def test_copy_a_message_or_its_last_code_block(tmp_path: Path) -> None:
    stored_chat()
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        view = app.query_one(ChatView)
        await until(pilot, lambda: len(view.bubbles) == 2, "the stored chat shown")
        await pilot.press("shift+tab")  # from the prompt to the messages
        assert app.focused is view
        assert view.selected_bubble().role == "assistant" and view.bubbles[1].has_class("-selected")
        await pilot.press("b")
        assert app.clipboard == "echo done"
        await pilot.press("c")
        assert app.clipboard == REPLY
        await pilot.press("up", "c")
        assert app.clipboard == "Write a script."
        notes = record_notifications(app)
        await pilot.press("b")  # the user's message has no code block
        assert any("no code block" in n for n in notes) and app.clipboard == "Write a script."


@run_async
async def test_prompt_keys_and_options_dialog(tmp_path: Path) -> None:
    chat_id = stored_chat()
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the stored chat shown")
        prompt = app.query_one("#chat-prompt")
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"
        prompt.clear()
        await pilot.press("enter")  # an empty prompt sends nothing
        assert not chat_pane(app).busy and not chat_pane(app).model_loading

        notes = record_notifications(app)
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChatOptionsScreen)
        app.screen.query_one("#options-system").text = "Answer in French."
        app.screen.query_one("#options-max_tokens").value = "many"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ChatOptionsScreen) and any("Max tokens" in n for n in notes)
        app.screen.query_one("#options-max_tokens").value = "7"
        app.screen.query_one("#options-temperature").value = "0.2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ChatOptionsScreen)
        with ChatStore() as store:
            chat = store.get_chat(chat_id)
        assert chat.system_prompt == "Answer in French."
        assert chat.params["max_tokens"] == 7 and chat.params["temperature"] == 0.2
        await pilot.press("ctrl+o", "escape")  # Esc leaves without saving
        assert not isinstance(app.screen, ChatOptionsScreen)


@run_async
async def test_a_chat_stored_with_bad_sampling_opens_with_the_defaults(tmp_path: Path) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Odd", params={"top_p": 3, "temperature": "hot"})  # another version's row
        store.add_message(chat.id, "user", "Hi")
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 1, "the stored chat shown")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChatOptionsScreen) and app.screen.sampling == Sampling()
        assert app.is_running


@run_async
async def test_chat_list_new_rename_delete(tmp_path: Path) -> None:
    older = stored_chat("Older [/b] chat")  # a title is the user's text, not markup
    newer = stored_chat("Newer chat")
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        chat_list = app.query_one("#chat-list")
        assert pane.chat_id == newer
        assert [str(chat_list.get_option_at_index(i).prompt) for i in range(2)] == ["Newer chat", "Older [/b] chat"]
        await pilot.press("ctrl+l", "down", "enter")  # open the older chat
        prompt = app.query_one("#chat-prompt")
        # the chat is switched before its messages are shown, and the focus moves after them: wait for both
        await until(pilot, lambda: pane.chat_id == older and app.focused is prompt, "the older chat opened, focused")
        assert "Older [/b] chat" in str(app.query_one("#chat-header").content)

        await pilot.press("ctrl+l", "r")
        assert isinstance(app.screen, RenameScreen)
        app.screen.query_one("#rename-input").value = "Renamed"
        await pilot.press("enter")
        await pilot.pause()
        assert str(chat_list.get_option_at_index(chat_list.highlighted).prompt) == "Renamed"

        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing deleted
        assert chat_list.option_count == 2
        await pilot.press("d", "y")
        await until(pilot, lambda: chat_list.option_count == 1, "the chat deleted")
        with ChatStore() as store:
            assert [c.id for c in store.list_chats()] == [newer]
        assert pane.chat_id is None and app.query_one(ChatView).bubbles == []

        await pilot.press("ctrl+n")
        assert pane.chat_id is None and app.focused is app.query_one("#chat-prompt")
        assert str(app.query_one("#chat-header").content).startswith("New chat · demo")


@run_async
async def test_enter_on_a_model_opens_chat_with_it_loaded(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert app.query_one(StatusLine).model_name is None
        await pilot.press("enter")  # the demo row
        assert app.current_pane_id() == "chat"
        await wait_idle(pilot)
        pane = chat_pane(app)
        assert pane.engine.loaded and pane.model_name == "demo"
        assert app.query_one(StatusLine).model_name == "demo · ctx 0/512"
        assert "demo" in str(app.query_one("#chat-header").content)


@run_async
async def test_bad_models_are_notifications(tmp_path: Path, demo_gguf: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\x00garbage" * 1000)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(demo_gguf.read_bytes()[:20_000_000])
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        notes = record_notifications(app)
        for path, needle in ((tmp_path / "missing.gguf", "no such file"), (junk, "junk.gguf"),
                             (truncated, "truncated")):
            pane.use_model(path)
            await wait_idle(pilot)
            assert any(n.startswith(f"Could not load {path.name}") and needle in n for n in notes), notes
            assert not pane.engine.loaded and app.is_running
            assert str(app.query_one(StatusLine).query_one("#status-model").content) == NO_MODEL
        # The prompt still works: a message with a broken model keeps its text for another try.
        await send(pilot, "hello")
        await wait_idle(pilot)
        assert app.query_one("#chat-prompt").text == "hello" and app.query_one(ChatView).bubbles == []


@run_async
async def test_context_the_machine_cannot_hold_is_refused_before_loading(tmp_path: Path) -> None:
    app = chat_app(tmp_path, ctx=200_000_000)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        notes = record_notifications(app)
        await send(pilot, "hello")
        await wait_idle(pilot)
        assert any("Could not load demo" in n and "needs about" in n and "available" in n for n in notes), notes
        assert not chat_pane(app).engine.loaded and app.is_running
        assert app.query_one("#chat-prompt").text == "hello"


@run_async
async def test_unreadable_database_is_a_notification(tmp_path: Path) -> None:
    default_path().parent.mkdir(parents=True, exist_ok=True)
    default_path().write_bytes(b"this is not an sqlite file" * 100)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        texts = [n.message for n in app._notifications]
        assert any("not a readable chat database" in t and "will not be saved" in t for t in texts), texts
        assert app.is_running and app.query_one("#chat-list").option_count == 0
        await pilot.press("ctrl+o", "escape")  # the pane's keys still work
        assert app.focused is app.query_one("#chat-prompt")


@run_async
async def test_f1_lists_the_chat_keys(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f1")
        rows = {(row.keys, row.where): row for row in app.screen.rows}
        for keys, action in (("Esc", "Stop"), ("Ctrl+N", "New"), ("Ctrl+R", "Again"), ("Ctrl+G", "Edit last"),
                             ("Ctrl+O", "Options"), ("Ctrl+L", "Chats")):
            row = rows[keys, "Chat pane"]
            assert row.here and row.description.startswith(action), row
        # The pane's own keys come before the text field's editing keys.
        wheres = [row.where for row in app.screen.rows]
        assert max(i for i, w in enumerate(wheres) if w == "Chat pane") < wheres.index("Prompt")
        await pilot.press("escape", "shift+tab", "f1")  # on the messages: their copy keys
        assert {row.keys for row in app.screen.rows if row.where == "Chat messages" and row.here} >= {"c", "b"}


GatedBackend = gated_backend(20)


@run_async
async def test_sending_follows_the_reply_until_the_user_scrolls_up(tmp_path: Path) -> None:
    GatedBackend.gate = threading.Semaphore(0)
    with ChatStore() as store:
        chat = store.create_chat("Scroll", params=Sampling(max_tokens=20).to_json())
        for turn in range(4):  # taller than the view
            store.add_message(chat.id, "user", f"Question {turn}")
            store.add_message(chat.id, "assistant", "\n\n".join(f"Line {i}." for i in range(5)))
    app = chat_app(tmp_path, chat_backend=GatedBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        view, pane = app.query_one(ChatView), chat_pane(app)
        await until(pilot, lambda: len(view.bubbles) == 8, "the stored chat shown")
        await pilot.pause()  # opened at the newest message
        view.scroll_home(animate=False)
        await pilot.pause()
        assert view.scroll_y == 0 < view.max_scroll_y
        await send(pilot, "One more?")
        await until(pilot, lambda: pane.busy and len(view.bubbles) == 10, "the reply streaming")
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y > 0  # the sent message is in view, though the user was up
        GatedBackend.gate.release(5)
        await until(pilot, lambda: view.bubbles[-1].text_shown.count("Line") == 5, "five lines")
        await pilot.pause()
        before = view.scroll_y
        assert before == view.max_scroll_y  # followed the text
        view.scroll_home(animate=False)  # the user scrolls up while it streams: following stops
        await pilot.pause()
        GatedBackend.gate.release(15)
        await wait_idle(pilot)
        assert view.scroll_y == 0 and view.max_scroll_y > before


@run_async
async def test_drafts_are_kept_per_chat_and_across_restarts(tmp_path: Path) -> None:
    with ChatStore() as store:
        older = store.create_chat("Older").id
    newer = stored_chat("Newer")
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane, prompt = chat_pane(app), app.query_one("#chat-prompt")
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the stored chat shown")
        await pilot.press(*"half")
        pane.post_message(ChatList.Opened(older))
        await until(pilot, lambda: pane.chat_id == older, "the older chat open")
        assert prompt.text == ""
        await pilot.press(*"other")
        await pilot.press("ctrl+n")
        assert pane.chat_id is None and prompt.text == ""
        await pilot.press(*"fresh")
        pane.post_message(ChatList.Opened(newer))
        await until(pilot, lambda: pane.chat_id == newer, "the newer chat open again")
        assert prompt.text == "half"
        await pilot.press("ctrl+n")
        assert prompt.text == "fresh"  # the chat not created yet kept its draft for the session
        pane.post_message(ChatList.Opened(newer))
        await until(pilot, lambda: pane.chat_id == newer, "the newer chat open again")
        await pilot.press(*" more")
    with ChatStore() as store:
        assert (store.get_chat(newer).draft, store.get_chat(older).draft) == ("half more", "other")
        assert [c.id for c in store.list_chats()] == [newer, older]  # typing did not reorder the list
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: chat_pane(app).chat_id == newer, "the newer chat reopened")
        assert app.query_one("#chat-prompt").text == "half more"


@run_async
async def test_editing_the_last_message_gives_the_draft_back(tmp_path: Path) -> None:
    chat_id = stored_chat()
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane, prompt = chat_pane(app), app.query_one("#chat-prompt")
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the stored chat shown")
        await pilot.press(*"unsent", "ctrl+g")
        assert pane.editing and prompt.text == "Write a script."
        await pilot.press("escape")
        assert not pane.editing and prompt.text == "unsent"
        await pilot.press("ctrl+g", "ctrl+g", *" Now.")  # twice: the edited text never becomes the draft
        await pilot.press("enter")
        await wait_idle(pilot)
        assert prompt.text == "unsent" and not pane.editing
        await pilot.pause(0.7)  # past the draft's save delay: kept on disk too
        with ChatStore() as store:
            assert [m.content for m in store.messages(chat_id)][0] == "Write a script. Now."
            assert store.get_chat(chat_id).draft == "unsent"
        await pilot.press("ctrl+r")  # a regenerate keeps the draft as well
        await wait_idle(pilot)
        assert prompt.text == "unsent"
