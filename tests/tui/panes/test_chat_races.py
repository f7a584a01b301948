"""Races in the Chat pane: what the user does while a model loads or a reply streams (fake backends that the test
gates, a real SQLite store)."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.events import ChatEmit, ChatEvent, ModelLoaded, Token
from tuillm.core.chat.store import ChatStore
from tuillm.core.llama.options import LoadOptions
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatView
from tuillm.tui.widgets.status_line import StatusLine


class SlowLoad(FakeBackend):
    """Loads when the test releases ``gate`` (one release a load); its reply's tokens come as ``tokens`` is released
    (one a token: released in plenty unless a test holds the reply)."""

    gate = threading.Semaphore(0)
    tokens = threading.Semaphore(100)
    arrived = 0  # loads that reached the backend (a load asked before a newer one reaches it is not tried)

    def __init__(self, emit: ChatEmit) -> None:
        def gated(event: ChatEvent) -> None:
            if isinstance(event, Token):
                SlowLoad.tokens.acquire(timeout=30)  # bounded: a broken test must not hang the app's close
            emit(event)

        super().__init__(gated, tokens=["Hi", " there", "."])

    def _load(self, path: str, options: LoadOptions) -> ModelLoaded:
        SlowLoad.arrived += 1
        SlowLoad.gate.acquire(timeout=30)
        return super()._load(path, options)


def slow_load(tokens: int = 100) -> type[SlowLoad]:
    """``SlowLoad`` with its gates set for a new test: no load released, ``tokens`` tokens."""
    SlowLoad.gate, SlowLoad.tokens, SlowLoad.arrived = threading.Semaphore(0), threading.Semaphore(tokens), 0
    return SlowLoad


def two_chats(model_a: Path | None = None, model_b: Path | None = None) -> tuple[int, int]:
    """Chat A then chat B (the newest, opened at start), each with a question and its answer."""
    with ChatStore() as store:
        a = store.create_chat("Alpha", model=str(model_a or ""))
        store.add_message(a.id, "user", "a question")
        store.add_message(a.id, "assistant", "an answer")
        b = store.create_chat("Beta", model=str(model_b or ""))
        store.add_message(b.id, "user", "b question")
        store.add_message(b.id, "assistant", "b answer")
        return a.id, b.id


def contents(chat_id: int) -> list[str]:
    with ChatStore() as store:
        return [m.content for m in store.messages(chat_id)]


@run_async
async def test_a_message_sent_while_the_model_loads_stays_in_its_chat(tmp_path: Path) -> None:
    slow_load()
    a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        await until(pilot, lambda: pane.chat_id == b, "the newest chat open")
        pane.post_message(ChatList.Opened(a))
        await until(pilot, lambda: pane.chat_id == a, "chat A open")
        await send(pilot, "for alpha")
        await until(pilot, lambda: pane.model_loading, "the model loading")
        pane.post_message(ChatList.Opened(b))  # the user goes to another chat while it loads
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await pilot.press(*"typing in b")
        SlowLoad.gate.release()
        await wait_idle(pilot)
        # Nothing was written into chat B, nor into A behind the user's back; the message waits in A's draft.
        assert pane.chat_id == b and contents(b) == ["b question", "b answer"]
        assert contents(a) == ["a question", "an answer"]
        assert app.query_one("#chat-prompt").text == "typing in b"  # what was typed in B stays
        assert any("was not sent" in note for note in seen), seen
        pane.post_message(ChatList.Opened(a))
        await until(pilot, lambda: pane.chat_id == a, "chat A open again")
        assert app.query_one("#chat-prompt").text == "for alpha"


def header(app) -> str:
    return str(app.query_one("#chat-header").content)


@run_async
async def test_the_status_line_names_the_model_loaded_for_a_chat_left_meanwhile(tmp_path: Path) -> None:
    slow_load()
    alpha, beta = tmp_path / "alpha.gguf", tmp_path / "beta.gguf"
    for path in (alpha, beta):
        path.write_bytes(b"GGUF")  # the fake backend never reads it
    a, b = two_chats(alpha, beta)
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == b, "the newest chat open")
        pane.post_message(ChatList.Opened(a))
        await until(pilot, lambda: pane.chat_id == a, "chat A open")
        await send(pilot, "for alpha")
        await until(pilot, lambda: pane.model_loading, "alpha loading")
        assert "alpha.gguf (loading…)" in header(app)
        pane.post_message(ChatList.Opened(b))
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        assert "loading" not in header(app)  # beta is not what is loading
        SlowLoad.gate.release()
        await wait_idle(pilot)
        assert pane.engine.model_path == str(alpha)
        assert app.query_one(StatusLine).model_name == "alpha.gguf"  # what is loaded, not B's model
        pane.post_message(ChatList.Opened(a))  # back in A: its model is the one loaded
        await until(pilot, lambda: pane.chat_id == a, "chat A open again")
        assert app.query_one(StatusLine).model_name.startswith("alpha.gguf · ctx ")


def chats() -> dict[int, list[str]]:
    """Every stored chat's messages on its current branch."""
    with ChatStore() as store:
        return {chat.id: [m.content for m in store.messages(chat.id)] for chat in store.list_chats()}


@run_async
async def test_a_model_picked_while_another_loads_writes_the_waiting_reply(tmp_path: Path) -> None:
    slow_load()
    alpha = tmp_path / "alpha.gguf"
    alpha.write_bytes(b"GGUF")
    _a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await send(pilot, "first")  # the demo model starts loading; the message waits for it
        await until(pilot, lambda: SlowLoad.arrived == 1, "the demo model loading")
        pane.use_model(alpha)  # Ctrl+T's choice while it loads: alpha loads after it
        SlowLoad.gate.release()  # the demo model is loaded; alpha's load is next
        await until(pilot, lambda: pane.engine.model_path is not None, "the demo model loaded")
        await pilot.pause()
        assert pane.model_loading and not pane.busy  # the message waits for alpha, the model it will be sent to
        assert app.query_one(StatusLine).model_name == "alpha.gguf (loading…)"
        SlowLoad.gate.release()
        await wait_idle(pilot)
        assert app.query_one(StatusLine).model_name.startswith("alpha.gguf · ctx ")
    with ChatStore() as store:
        reply = store.messages(b)[-1]
        assert store.messages(b)[-2].content == "first"
        assert (reply.content, reply.model) == ("Hi there.", str(alpha))  # named after the model that wrote it


@run_async
async def test_what_is_typed_while_the_model_loads_is_kept(tmp_path: Path) -> None:
    slow_load()
    _a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane, prompt = chat_pane(app), app.query_one("#chat-prompt")
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await pilot.press(*"first", "enter")
        await until(pilot, lambda: pane.model_loading, "the model loading")
        await pilot.press("enter", "enter")  # refused: the message waits for the model
        await pilot.press(*" and then")  # the user goes on writing the next one
        SlowLoad.gate.release()
        await wait_idle(pilot)
        assert chats()[b] == ["b question", "b answer", "first", "Hi there."]  # sent once
        assert prompt.text == "and then" and pane.draft == "and then"


@run_async
async def test_editing_waits_while_a_message_waits_for_the_model(tmp_path: Path) -> None:
    slow_load()
    _a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane, prompt = chat_pane(app), app.query_one("#chat-prompt")
        seen = record_notifications(app)
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await send(pilot, "first")
        await until(pilot, lambda: pane.model_loading, "the model loading")
        await pilot.press("ctrl+g")  # the edit would be dropped when the waiting message is sent
        assert not pane.editing and "Chat: the model is still loading" in seen
        SlowLoad.gate.release()
        await wait_idle(pilot)
        assert chats()[b] == ["b question", "b answer", "first", "Hi there."]
        # The sent message does not come back as the draft (sent twice with the next Enter).
        assert prompt.text == "" and pane.draft == ""


@run_async
async def test_deleting_the_chat_being_edited_leaves_editing(tmp_path: Path) -> None:
    slow_load()
    SlowLoad.gate.release(10)
    a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await pilot.press("ctrl+g")
        assert pane.editing
        pane.delete(b)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await until(pilot, lambda: pane.chat_id is None, "chat B deleted")
        assert not pane.editing
        app.query_one("#chat-prompt").focus()
        await pilot.press("enter")  # the prompt's text, as a new chat's first message
        await wait_idle(pilot)
        assert not any("has no message" in note for note in seen), seen
        assert all(messages for messages in chats().values()), chats()  # no empty chat left behind
        assert chats()[a] == ["a question", "an answer"]


@run_async
async def test_a_chat_deleted_while_its_message_waits_for_the_model(tmp_path: Path) -> None:
    slow_load()
    a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await send(pilot, "first")
        await until(pilot, lambda: pane.model_loading, "the model loading")
        pane.delete(b)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await until(pilot, lambda: pane.chat_id is None, "chat B deleted")
        SlowLoad.gate.release()
        await wait_idle(pilot)
        assert chats() == {a: ["a question", "an answer"]}  # the message did not make a chat of its own
        assert any("its chat was deleted" in note for note in seen), seen


@run_async
async def test_a_chat_is_not_deleted_under_a_reply_that_began_while_asking(tmp_path: Path) -> None:
    slow_load(tokens=0)
    _a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        seen = record_notifications(app)
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await send(pilot, "first")
        await until(pilot, lambda: pane.model_loading, "the model loading")
        pane.delete(b)  # not streaming yet: asked
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        SlowLoad.gate.release()
        await until(pilot, lambda: pane.busy, "the waiting message sent")  # while the question is open
        await pilot.press("y")
        SlowLoad.tokens.release(10)
        await wait_idle(pilot)
        assert any("Esc stops it first" in note for note in seen), seen
        assert pane.chat_id == b and chats()[b] == ["b question", "b answer", "first", "Hi there."]


@run_async
async def test_a_model_picked_while_a_reply_streams_is_named_loading(tmp_path: Path) -> None:
    slow_load(tokens=1)
    SlowLoad.gate.release()  # the demo model loads at once
    alpha = tmp_path / "alpha.gguf"
    alpha.write_bytes(b"GGUF")
    _a, b = two_chats()
    app = chat_app(tmp_path, chat_backend=SlowLoad)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane, status = chat_pane(app), app.query_one(StatusLine)
        await until(pilot, lambda: pane.chat_id == b, "chat B open")
        await send(pilot, "first")
        view = app.query_one(ChatView)
        await until(pilot, lambda: pane.busy and "Hi" in view.bubbles[-1].text_shown, "the reply streaming")
        pane.use_model(alpha)  # stops the reply; alpha loads after it
        SlowLoad.tokens.release(10)
        await until(pilot, lambda: not pane.busy, "the reply stopped")
        await pilot.pause()
        # The stopped reply's figures are the demo model's: the status line says alpha is loading, as the header.
        assert status.model_name == "alpha.gguf (loading…)" and "alpha.gguf (loading…)" in header(app)
        SlowLoad.gate.release()
        await wait_idle(pilot)
        assert status.model_name == "alpha.gguf · ctx 0/512"
    with ChatStore() as store:
        reply = store.messages(b)[-1]
        assert reply.content.startswith("Hi") and not reply.complete  # stopped: kept as far as it got
