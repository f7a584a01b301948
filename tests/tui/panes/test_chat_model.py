"""A chat owns its model: it is kept with the chat and loaded again when the chat is reopened (after a restart
too), a missing file is said and never silently replaced, every reply records the model that wrote it, and "chat
with this model" opens a new chat. On the fake backend (no reply needs the real model) with real model files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from textual.widgets import Input, OptionList

from tests.core.chat.test_lora import write_lora
from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import make_app, run_async, until
from tests.tui.chat_helpers import SHORT, SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.schema import MIGRATIONS
from tuillm.core.chat.store import ChatStore
from tuillm.core.settings import Config, ModelDefaults
from tuillm.tui.screens.pick_model import PickModelScreen
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
        await until(pilot, lambda: pane.chat_id == second, "the last chat reopened")
        assert pane.model_path == b and b.name in header(app)
        pane.post_message(ChatList.Opened(first))
        await until(pilot, lambda: pane.chat_id == first, "the first chat open")
        assert pane.model_path == a and a.name in header(app)
        await send(pilot, "again")
        await wait_idle(pilot)
        assert pane.engine.model_path == str(a)  # reopening the chat loaded its model, not the last one used
    with ChatStore() as store:
        assert store.get_chat(first).model == str(a)
        assert [m.model for m in store.messages(first)][-1] == str(a)


@run_async
async def test_a_missing_model_is_said_and_never_silently_replaced(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "alpha.gguf")
    gone = tmp_path / "gone.gguf"
    with ChatStore() as store:
        chat_id = store.create_chat("Old", model=str(gone)).id
        store.add_message(chat_id, "user", "Hello")
        store.add_message(chat_id, "assistant", "Hi", model=str(gone))
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: isinstance(app.screen, PickModelScreen), "the picker offered")
        assert "gone.gguf: this chat's model file is gone" in str(app.screen.query_one("#pick-model-reason").content)
        await pilot.press("escape")  # not now: nothing changes, nothing is sent
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the chat shown")
        assert pane.model_missing and "gone.gguf (file missing)" in header(app)
        notes.clear()
        await send(pilot, "still there?")
        await pilot.pause()
        assert any("model file is gone" in n for n in notes), notes
        assert not pane.engine.loaded and app.query_one("#chat-prompt").text == "still there?"
        await pick(pilot, "alpha")  # Ctrl+T: this chat goes on with it, recorded and said
        await wait_idle(pilot)
        assert pane.chat_id == chat_id and not pane.model_missing and pane.engine.model_path == str(a)
        assert any(f"this chat now uses {a.name}" in n for n in notes), notes
        app.query_one("#chat-prompt").focus()
        await pilot.press("enter")  # the message kept in the prompt goes now
        await wait_idle(pilot)
    with ChatStore() as store:
        assert store.get_chat(chat_id).model == str(a)
        assert [m.model for m in store.messages(chat_id)] == ["", str(gone), "", str(a)]


@run_async
async def test_a_model_deleted_in_the_models_pane_is_said_at_once(tmp_path: Path) -> None:
    from tests.tui.panes.test_models import filter_to, show_models

    alpha, beta = write_tiny_gguf(tmp_path / "alpha.gguf"), write_tiny_gguf(tmp_path / "beta.gguf")
    with ChatStore() as store:
        a = store.create_chat("Alpha", model=str(alpha)).id
        b = store.create_chat("Beta", model=str(beta)).id

    async def delete(name: str) -> None:
        await show_models(pilot)
        await filter_to(pilot, name)
        await pilot.press("d", "y")
        await until(pilot, lambda: not (tmp_path / f"{name}.gguf").exists(), f"{name} deleted")
        await pilot.press("f2")

    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == b, "the newest chat open")
        await send(pilot, "hello")  # beta loads
        await wait_idle(pilot)
        await delete("beta")
        assert header(app).endswith("beta.gguf (file missing)")  # said at once, not at the next load
        await send(pilot, "still there?")  # loaded: the chat keeps working until the model is unloaded
        await wait_idle(pilot)
        assert len(app.query_one(ChatView).bubbles) == 4
        pane.post_message(ChatList.Opened(a))
        await until(pilot, lambda: pane.chat_id == a, "chat A open")
        assert header(app).endswith("alpha.gguf (loads with the next message)")
        await delete("alpha")
        assert pane.model_missing and header(app).endswith("alpha.gguf (file missing)")


@run_async
async def test_a_new_chat_after_a_missing_model_does_not_inherit_it(tmp_path: Path) -> None:
    with ChatStore() as store:
        store.create_chat("Old", model=str(tmp_path / "gone.gguf"))
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: isinstance(app.screen, PickModelScreen), "the picker offered")
        await pilot.press("escape")
        await until(pilot, lambda: pane.model_missing, "the missing model noticed")
        await pilot.press("ctrl+n")
        assert not pane.model_missing and pane.model_path is None and header(app).startswith("New chat · demo")
        await send(pilot, "hello")  # the demo model, as any new chat
        await wait_idle(pilot)
        assert pane.model_name == "demo" and len(app.query_one(ChatView).bubbles) == 2


async def pick(pilot, name: str, adapter: Path | None = None, scale: str = "") -> None:
    """Ctrl+T in the Chat pane, then the model called ``name`` (and an adapter and scale) picked with Enter."""
    app = pilot.app
    if not isinstance(app.screen, PickModelScreen):
        app.query_one("#chat-prompt").focus()
        await pilot.press("ctrl+t")
    await until(pilot, lambda: isinstance(app.screen, PickModelScreen) and app.screen.entries, "the list")
    screen = app.screen
    screen.query_one(OptionList).highlighted = [e.name for e in screen.entries].index(name)
    screen.query_one("#pick-model-adapter", Input).value = str(adapter) if adapter else ""
    if scale:
        screen.query_one("#pick-model-scale", Input).value = scale
    screen.query_one(OptionList).focus()
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, PickModelScreen), "the picker closed")


@run_async
async def test_a_chat_keeps_its_adapter_scale_and_load_settings(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "alpha.gguf")
    style = write_tiny_gguf(tmp_path.parent / "style.gguf")  # the fake backend never reads it
    config = Config(default_ctx=512, model_dirs=[tmp_path])
    config.set_defaults_for(a, ModelDefaults(ctx=1024, threads=2))
    app = make_app([tmp_path], config=config, chat_backend=FakeBackend)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await send(pilot, "first")  # a new chat on the demo model
        await wait_idle(pilot)
        chat_id = pane.chat_id
        await pick(pilot, "alpha", adapter=style, scale="0.5")
        await wait_idle(pilot)
        assert any("this chat now uses alpha.gguf + style.gguf" in n for n in notes), notes
        assert "alpha.gguf + style.gguf" in header(app)
        await send(pilot, "second")
        await wait_idle(pilot)
        assert str(app.query(".bubble-role").last().render()).startswith("Assistant · alpha.gguf + style.gguf · ")
    with ChatStore() as store:
        chat = store.get_chat(chat_id)
        assert (chat.model, chat.adapter) == (str(a), str(style))
        assert chat.load_values["n_ctx"] == 1024 and chat.load_values["n_threads"] == 2
        assert chat.load_values["lora_scale"] == 0.5
        assert [(m.model, m.adapter) for m in store.messages(chat_id) if m.role == "assistant"][-1] == \
            (str(a), str(style))
    config.set_defaults_for(a, ModelDefaults(ctx=2048))  # the model's settings change later: the chat keeps its own
    app = make_app([tmp_path], config=config, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == chat_id, "the chat reopened")
        assert "alpha.gguf + style.gguf" in header(app)
        await send(pilot, "third")
        await wait_idle(pilot)
        loaded = pane.engine.options
        assert (pane.engine.model_path, loaded.lora_path, loaded.lora_scale) == (str(a), str(style), 0.5)
        assert (loaded.n_ctx, loaded.n_threads) == (1024, 2)


@run_async
async def test_a_missing_adapter_is_said_and_the_picker_offered(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "alpha.gguf")
    with ChatStore() as store:
        store.set_model(store.create_chat("Tuned").id, str(a), adapter=str(tmp_path / "gone-lora.gguf"))
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: isinstance(app.screen, PickModelScreen), "the picker offered")
        reason = str(app.screen.query_one("#pick-model-reason").content)
        assert "gone-lora.gguf: this chat's adapter file is gone" in reason
        await pilot.press("escape")
        assert pane.model_missing and "alpha.gguf + gone-lora.gguf (file missing)" in header(app)


def test_the_load_settings_a_chat_keeps_are_checked_when_read(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "c.sqlite3") as store:
        chat = store.set_model(store.create_chat().id, "/m.gguf", adapter="/a.gguf",
                               load={"n_ctx": 2048, "n_threads": None, "lora_scale": 0.25, "bogus": 1})
        assert chat.load_values == {"n_ctx": 2048, "n_threads": None, "lora_scale": 0.25}  # unknown: dropped
        # A hand edit or another version: each bad value is dropped, the good ones kept.
        store._run("UPDATE chats SET load = ? WHERE id = ?",
                   ('{"n_ctx": -5, "kv_type": "zzz", "n_threads": 3, "flash_attn": "yes"}', chat.id))
        assert store.get_chat(chat.id).load_values == {"n_threads": 3}
        store._run("UPDATE chats SET load = 'not json' WHERE id = ?", (chat.id,))
        assert store.get_chat(chat.id).load_values == {}
        reply = store.add_message(chat.id, "assistant", "hi", model="/m.gguf", adapter="/a.gguf")
        assert (reply.model, reply.adapter) == ("/m.gguf", "/a.gguf")
        assert store.export_json(chat.id)["adapter"] == "/a.gguf"


def test_a_database_from_before_adapters_opens_with_none(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for number, step in enumerate(MIGRATIONS[:3]):
        db.executescript(f"{step}; PRAGMA user_version = {number + 1};")
    db.execute("INSERT INTO chats (title, model, created, updated) VALUES ('Old', '/m.gguf', 0, 0)")
    db.commit()
    db.close()
    with ChatStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        (chat,) = store.list_chats()
        assert (chat.model, chat.adapter, chat.load_values) == ("/m.gguf", "", {})


@run_async
async def test_reopening_a_chat_loads_its_adapter_with_llama_cpp(tmp_path: Path, demo_gguf: Path) -> None:
    adapter = write_lora(tmp_path / "strong.gguf", n_embd=576, n_layers=8, strength=1.0)  # SmolLM2-135M's shape
    with ChatStore() as store:
        chat = store.create_chat("Tuned", params=SHORT.to_json())
        store.set_model(chat.id, str(demo_gguf), adapter=str(adapter), load={"n_ctx": 256, "lora_scale": 0.5})
    app = chat_app(tmp_path)  # the real backend
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == chat.id, "the chat reopened")
        assert "demo + strong.gguf" in header(app)
        await send(pilot, "Hi")
        await wait_idle(pilot)
        assert (pane.engine.lora_path, pane.engine.n_ctx) == (str(adapter), 256)
    with ChatStore() as store:
        reply = store.messages(chat.id)[-1]
        assert (reply.role, reply.model, reply.adapter) == ("assistant", str(demo_gguf), str(adapter))
        assert reply.content


@run_async
async def test_a_chat_from_before_load_settings_records_them_with_its_next_turn(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "alpha.gguf")
    with ChatStore() as store:
        chat_id = store.create_chat("Old", model=str(a)).id  # as a database from before this version holds it
    app = chat_app(tmp_path, ctx=768, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == chat_id, "the chat reopened")
        await send(pilot, "hello")
        await wait_idle(pilot)
        assert pane.engine.model_path == str(a) and pane.engine.options.n_ctx == 768
    with ChatStore() as store:
        chat = store.get_chat(chat_id)
        assert chat.model == str(a) and chat.load_values["n_ctx"] == 768 and chat.adapter == ""
