"""A chat's model in the header, and loads that end in another order than asked: the header says when the chat's
model is not the one loaded (at 60, 80 and 120 columns, its name shortened, never dropped); a failed load is said
under the name of the model that failed, and an older load's failure leaves the newer one alone (fake backends
whose loads the test gates, a real SQLite store)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.events import ModelLoaded
from tuillm.core.chat.store import ChatStore
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions
from tuillm.tui.panes import chat_model
from tuillm.tui.panes.chat import ChatPane
from tuillm.tui.panes.chat_layout import HeaderModel, fit_model_header
from tuillm.tui.panes.chat_loads import LoadFailed, LoadOrder, LoadRequest, ModelReady, load_in_order
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.status_line import StatusLine, model_text

LONG = "Meta-Llama-3.1-8B-Instruct-abliterated-Q4_K_M.gguf"


class GatedLoads(FakeBackend):
    """Loads when the test releases ``gate`` (one release a load); a file named "broken…" fails to load."""

    gate = threading.Semaphore(0)
    arrived = 0  # loads that reached the backend (a load asked before a newer one reaches it is not tried)

    def _load(self, path: str, options: LoadOptions):
        GatedLoads.arrived += 1
        GatedLoads.gate.acquire(timeout=30)  # bounded: a broken test must not hang the app's close
        if Path(path).name.startswith("broken"):
            raise TuillmError(f"{Path(path).name}: not a GGUF model")
        return super()._load(path, options)


class FailingLoads(FakeBackend):
    """Loads at once; a file named "broken…" fails to load."""

    def _load(self, path: str, options: LoadOptions):
        if Path(path).name.startswith("broken"):
            raise TuillmError(f"{Path(path).name}: not a GGUF model")
        return super()._load(path, options)


def model_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"GGUF")  # the fake backends never read it; the pane only needs it to exist
    return path


def stored_chat(title: str, model: Path) -> int:
    with ChatStore() as store:
        chat = store.create_chat(title, model=str(model))
        store.add_message(chat.id, "user", "a question")
        store.add_message(chat.id, "assistant", "an answer", model=str(model))
        return chat.id


def header(app) -> str:
    return str(app.query_one("#chat-header").content)


@pytest.mark.parametrize("state", ["loading…", "reloading…"])
def test_the_status_line_shortens_the_name_and_keeps_the_state(state: str) -> None:
    status = f"{LONG} ({state})"
    assert model_text(status, 80) == f"model: {status}"
    for width in (50, 30, 8 + len(state)):  # as the header: the name shortened in its middle, its state whole
        text = model_text(status, width)
        assert len(text) == width and text.startswith("Me") and text.endswith(f"f ({state})"), text


def test_the_header_shortens_the_name_and_keeps_the_state() -> None:
    model = HeaderModel(f"{LONG} + style.gguf", "loads with the next message", "not loaded")
    assert fit_model_header("Alpha", model, 120) == f"Alpha · {LONG} + style.gguf (loads with the next message)"
    text = fit_model_header("Alpha", model, 58)  # 60 columns
    assert len(text) == 58 and text.startswith("A… · Meta-Llama") and text.endswith("style.gguf (not loaded)")
    text = fit_model_header("Alpha", model, 24)  # no room for the title: the name, shortened, and its state
    assert len(text) == 24 and text.startswith("Meta") and text.endswith(".gguf (not loaded)")
    assert fit_model_header("Alpha", HeaderModel("beta.gguf"), 58) == "Alpha · beta.gguf"  # loaded: its name alone
    assert fit_model_header("Alpha", model, 0) == f"Alpha · {model.text()}"  # before the first layout: as is


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (120, 40)])
@run_async
async def test_a_chat_whose_model_is_not_the_loaded_one_says_so(tmp_path: Path, size: tuple[int, int]) -> None:
    alpha, beta = model_file(tmp_path, LONG), model_file(tmp_path, "beta.gguf")
    a = stored_chat("Alpha", alpha)
    b = stored_chat("Beta", beta)
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=size, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == b, "the newest chat open")
        await send(pilot, "hello")  # beta loads
        await wait_idle(pilot)
        assert header(app).endswith("beta.gguf")  # the loaded model: its name alone
        pane.post_message(ChatList.Opened(a))
        await until(pilot, lambda: pane.chat_id == a, "chat A open")
        await pilot.pause()
        text = header(app)  # alpha is not loaded (beta is): said, the name shortened at most
        assert text.endswith(("Q4_K_M.gguf (not loaded)", "Q4_K_M.gguf (loads with the next message)")), text
        assert "Meta-Llama" in text and len(text) <= app.query_one("#chat-header").content_region.width


@run_async
async def test_a_chat_whose_model_failed_to_load_says_so(tmp_path: Path) -> None:
    broken = model_file(tmp_path, "broken.gguf")
    stored_chat("Broken", broken)
    app = chat_app(tmp_path, chat_backend=FailingLoads)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.model_path == broken, "the chat open")
        await send(pilot, "hello")
        await wait_idle(pilot)
        assert any(note.startswith("Could not load broken.gguf: ") for note in seen), seen
        assert header(app).endswith("broken.gguf (not loaded: its load failed)")
        assert app.query_one("#chat-prompt").text == "hello"  # the message waits for a model that loads


@dataclass
class HeldLoad:
    """A chat of ``first`` open, "hello" sent, and the load of ``first`` held in the backend (``GatedLoads``)."""

    pilot: Pilot
    pane: ChatPane
    chat_id: int
    seen: list[str]  # the notifications since the app started


@asynccontextmanager
async def first_load_held(tmp_path: Path, first: str) -> AsyncIterator[HeldLoad]:
    GatedLoads.gate, GatedLoads.arrived = threading.Semaphore(0), 0
    path = model_file(tmp_path, first)
    chat_id = stored_chat("Chat", path)
    app = chat_app(tmp_path, chat_backend=GatedLoads)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.model_path == path, "the chat open")
        await send(pilot, "hello")
        await until(pilot, lambda: GatedLoads.arrived == 1, f"{first} loading")
        yield HeldLoad(pilot, pane, chat_id, seen)


@run_async
async def test_an_older_load_that_fails_is_named_and_leaves_the_newer_one_loading(tmp_path: Path) -> None:
    beta = model_file(tmp_path, "beta.gguf")
    async with first_load_held(tmp_path, "broken.gguf") as held:
        pilot, pane, seen, app = held.pilot, held.pane, held.seen, held.pilot.app
        pane.use_model(beta)  # Ctrl+T's choice while it loads: beta loads after it
        GatedLoads.gate.release()  # broken.gguf's load fails; beta's goes on
        await until(pilot, lambda: any("Could not load" in note for note in seen), "the failure said")
        await pilot.pause()
        assert any(note.startswith("Could not load broken.gguf: ") for note in seen), seen
        assert not any("Could not load beta" in note for note in seen), seen
        assert pane.model_loading and header(app).endswith("beta.gguf (loading…)")
        assert app.query_one(StatusLine).model_name == "beta.gguf (loading…)"
        GatedLoads.gate.release()
        await wait_idle(pilot)
        assert pane.engine.model_path == str(beta) and header(app).endswith("beta.gguf")
    with ChatStore() as store:
        reply = store.messages(held.chat_id)[-1]
        assert store.messages(held.chat_id)[-2].content == "hello"  # the waiting message went to beta
        assert reply.model == str(beta)


@run_async
async def test_an_older_failure_said_after_the_newer_one_loaded_sends_the_message(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """The older load's failure reaches the pane after the newer one's success (its worker was slow to say it): the
    newer one decides, and the waiting message is sent with it at once."""
    real = chat_model.load_in_order

    def slow_to_say(order: LoadOrder, backend, request: LoadRequest, *args) -> ModelReady | LoadFailed:
        ended = real(order, backend, request, *args)
        for _ in range(3000):  # the older one's end waits until the pane has taken the newer one's (bounded)
            if request.ticket != 1 or (order.asked is not None and not order.loading(order.asked.key)):
                break
            time.sleep(0.01)
        return ended

    monkeypatch.setattr(chat_model, "load_in_order", slow_to_say)
    beta = model_file(tmp_path, "beta.gguf")
    async with first_load_held(tmp_path, "broken.gguf") as held:
        pilot, pane, app = held.pilot, held.pane, held.pilot.app
        pane.use_model(beta)
        GatedLoads.gate.release(2)  # broken.gguf's load fails, then beta loads
        await wait_idle(pilot)
        assert any(note.startswith("Could not load broken.gguf: ") for note in held.seen), held.seen
        assert pane.engine.model_path == str(beta) and header(app).endswith("beta.gguf")
        assert app.query_one(StatusLine).model_name.startswith("beta.gguf · ctx ")
    with ChatStore() as store:
        asked, reply = store.messages(held.chat_id)[-2:]
        assert asked.content == "hello" and reply.model == str(beta)  # the waiting message went to beta


@run_async
async def test_a_newer_load_refused_at_once_does_not_send_with_the_older_model(tmp_path: Path,
                                                                                monkeypatch) -> None:
    import tuillm.core.models.memory as memory
    import tuillm.core.models.metadata as metadata

    # The fit check refuses "huge.gguf" before it reaches the backend, while alpha's load is still held there.
    monkeypatch.setattr(metadata, "read_info", lambda path: Path(path).name)
    monkeypatch.setattr(memory, "load_refusal", lambda info, *_: "huge.gguf: too big" if info == "huge.gguf" else None)
    huge = model_file(tmp_path, "huge.gguf")
    async with first_load_held(tmp_path, "alpha.gguf") as held:
        pilot, pane, seen, app = held.pilot, held.pane, held.seen, held.pilot.app
        pane.use_model(huge)  # refused at once; alpha's load goes on
        await until(pilot, lambda: any("Could not load" in note for note in seen), "the refusal said")
        assert any(note.startswith("Could not load huge.gguf: ") for note in seen), seen
        GatedLoads.gate.release()  # alpha loads: the chat's model is huge.gguf now, so nothing is sent with alpha
        await wait_idle(pilot)
        assert pane.engine.model_path == str(tmp_path / "alpha.gguf")
        assert header(app).endswith("huge.gguf (not loaded: its load failed)")
        assert app.query_one("#chat-prompt").text == "hello"  # the message waits for a model that loads
    with ChatStore() as store:
        assert [m.content for m in store.messages(held.chat_id)] == ["a question", "an answer"]


def test_a_load_asked_before_a_newer_one_reaches_the_backend_is_not_tried(tmp_path: Path) -> None:
    loads: list[str] = []
    backend = FakeBackend(lambda _event: None)
    backend.load = lambda path, options=None: loads.append(Path(path).name)  # type: ignore[method-assign]
    order = LoadOrder()
    older = order.ask(tmp_path / "older.gguf", "older.gguf", LoadOptions())
    order.ask(tmp_path / "newer.gguf", "newer.gguf", LoadOptions())
    ended = load_in_order(order, backend, older, None, lambda _event: None)
    assert isinstance(ended, LoadFailed) and ended.error is None and loads == []  # not tried: no notice either
    backend.close()


def test_the_newest_load_decides_once_no_load_is_in_flight(tmp_path: Path) -> None:
    order = LoadOrder()
    older = order.ask(tmp_path / "older.gguf", "older.gguf", LoadOptions())
    newer = order.ask(tmp_path / "newer.gguf", "newer.gguf", LoadOptions())
    refused = LoadFailed(newer, "newer.gguf: too big")
    assert order.end(refused) is None  # the older load is still in the backend: it may yet load
    assert not order.loading(newer.key) and order.in_flight == 1
    loaded = ModelReady(ModelLoaded(path=str(older.path), n_ctx=512, n_gpu_layers=0, load_seconds=0.0),
                        older.options, older.ticket)
    assert order.end(loaded) is refused and order.asked is None  # the newest's end decides: it failed
