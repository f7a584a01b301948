"""A chat owns its model: it is kept with the chat and loaded again when the chat is reopened (after a restart
too), a missing file is said and never silently replaced, every reply records the model that wrote it, and "chat
with this model" opens a new chat. On the fake backend (no reply needs the real model) with real model files."""

from __future__ import annotations

from pathlib import Path

from tests.tui.app_helpers import run_async
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications, send, wait_idle, wait_until
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatView, bubble_header


def model_files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "alpha.gguf", tmp_path / "beta.gguf"
    for path in (a, b):
        path.write_bytes(b"GGUF")  # the fake backend never reads it; the pane only needs it to exist
    return a, b


def header(app) -> str:
    return str(app.query_one("#chat-header").content)


def test_a_reply_header_names_its_model() -> None:
    assert bubble_header("assistant", True, None, model="alpha.gguf") == "Assistant · alpha.gguf"
    assert bubble_header("assistant", True, None, model="\x1b]0;x\x07a") == "Assistant · a"
    assert bubble_header("user", True, None) == "You"


@run_async
async def test_each_chat_keeps_its_model_across_a_restart(tmp_path: Path) -> None:
    a, b = model_files(tmp_path)
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        app.chat_with(a, a.name)
        await wait_idle(pilot)
        await send(pilot, "first")
        await wait_idle(pilot)
        first = pane.chat_id
        assert app.query_one(ChatView).bubbles[-1].model == a.name
        assert str(app.query(".bubble-role").last().render()).startswith(f"Assistant · {a.name} · ")
        app.chat_with(b, b.name)  # "chat with this model": a new chat, the first one keeps alpha
        await wait_idle(pilot)
        assert pane.chat_id is None and app.query_one(ChatView).bubbles == []
        await send(pilot, "second")
        await wait_idle(pilot)
        second = pane.chat_id
    with ChatStore() as store:
        assert (store.get_chat(first).model, store.get_chat(second).model) == (str(a), str(b))
        assert [m.model for m in store.messages(first)] == ["", str(a)]  # the reply records who wrote it
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await wait_until(pilot, lambda: pane.chat_id == second, "the last chat reopened")
        assert pane.model_path == b and b.name in header(app)
        pane.post_message(ChatList.Opened(first))
        await wait_until(pilot, lambda: pane.chat_id == first, "the first chat open")
        assert pane.model_path == a and a.name in header(app)
        await send(pilot, "again")
        await wait_idle(pilot)
        assert pane.engine.model_path == str(a)  # reopening the chat loaded its model, not the last one used
    with ChatStore() as store:
        assert store.get_chat(first).model == str(a)
        assert [m.model for m in store.messages(first)][-1] == str(a)


@run_async
async def test_a_missing_model_is_said_and_never_silently_replaced(tmp_path: Path) -> None:
    a, _ = model_files(tmp_path)
    gone = tmp_path / "gone.gguf"
    with ChatStore() as store:
        chat_id = store.create_chat("Old", model=str(gone)).id
        store.add_message(chat_id, "user", "Hello")
        store.add_message(chat_id, "assistant", "Hi", model=str(gone))
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await wait_until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the chat shown")
        assert pane.model_missing and "gone.gguf (file missing)" in header(app)
        notes.clear()
        await send(pilot, "still there?")
        await pilot.pause()
        assert any("model file is gone" in n for n in notes), notes
        assert not pane.engine.loaded and app.query_one("#chat-prompt").text == "still there?"
        app.chat_with(a, a.name)  # the user picks another: this chat goes on with it, recorded and said
        await wait_idle(pilot)
        assert pane.chat_id == chat_id and not pane.model_missing
        assert any(f"this chat now uses {a.name}" in n for n in notes), notes
        await pilot.press("enter")  # the message kept in the prompt goes now
        await wait_idle(pilot)
    with ChatStore() as store:
        assert store.get_chat(chat_id).model == str(a)
        assert [m.model for m in store.messages(chat_id)] == ["", str(gone), "", str(a)]


@run_async
async def test_a_new_chat_after_a_missing_model_does_not_inherit_it(tmp_path: Path) -> None:
    with ChatStore() as store:
        store.create_chat("Old", model=str(tmp_path / "gone.gguf"))
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await wait_until(pilot, lambda: pane.model_missing, "the missing model noticed")
        await pilot.press("ctrl+n")
        assert not pane.model_missing and pane.model_path is None and header(app).startswith("New chat · demo")
        await send(pilot, "hello")  # the demo model, as any new chat
        await wait_idle(pilot)
        assert pane.model_name == "demo" and len(app.query_one(ChatView).bubbles) == 2
