"""The memory guard's reload is one of the Chat pane's loads: it names the model it reloads (the open chat's may be
another), its failure is said under that name, and a model picked while it waits for the old one to close goes in
its place. A model picked while the guard's unload or reload frees the old one loads only once it is freed (fake
backends, an injected memory probe, a real SQLite store)."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.tui.app_helpers import GIB, run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LoadOptions
from tuillm.tui.screens.memory import MemoryScreen
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.status_line import MemorySample, StatusLine

OK = MemorySample(used=3 * GIB, total=16 * GIB, rss=2**27)
CRITICAL = MemorySample(used=16 * GIB - 300 * 2**20, total=16 * GIB, rss=2**27)


class NoRoomToReload(FakeBackend):
    """Loads with the full context only: the guard's smaller reload fails."""

    def _load(self, path: str, options: LoadOptions):
        if options.n_ctx is not None and options.n_ctx < 2048:
            raise TuillmError(f"{Path(path).name}: no room")
        return super()._load(path, options)


class SlowClose(FakeBackend):
    """The first backend closed waits for the test's ``gate`` (freeing a large model takes a while); every load, and
    the end of that close, is kept in ``events`` in the order they happened."""

    gate = threading.Semaphore(0)
    hold = True
    events: list[str] = []

    def _load(self, path: str, options: LoadOptions):
        SlowClose.events.append(f"load {Path(path).name} ctx {options.n_ctx}")
        return super()._load(path, options)

    def close(self) -> None:
        held, SlowClose.hold = SlowClose.hold, False
        if held:
            SlowClose.gate.acquire(timeout=30)  # bounded: a broken test must not hang the app's close
        super().close()
        if held:
            SlowClose.events.append("old closed")


# How long a test holds the old backend's close after picking a model: a load that does not wait for the close
# reaches the backend meanwhile (at once, without the wait). A load that waits never does, however long it is.
HELD_S = 1.0


def model_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"GGUF")  # the fake backends never read it; the pane only needs it to exist
    return path


async def memory_runs_short(pilot, now: list[MemorySample]) -> MemoryScreen:
    now[0] = CRITICAL
    pilot.app.status_line.refresh_memory()
    await until(pilot, lambda: isinstance(pilot.app.screen, MemoryScreen), "the memory offer")
    return pilot.app.screen


@run_async
async def test_the_reload_names_the_model_it_reloads(tmp_path: Path) -> None:
    alpha, beta = model_file(tmp_path, "alpha.gguf"), model_file(tmp_path, "beta.gguf")
    with ChatStore() as store:
        a = store.create_chat("Alpha", model=str(alpha)).id
        b = store.create_chat("Beta", model=str(beta)).id
    now = [OK]
    app = chat_app(tmp_path, ctx=2048, memory_probe=lambda: now[0], chat_backend=NoRoomToReload)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.chat_id == b, "the newest chat open")
        pane.post_message(ChatList.Opened(a))
        await until(pilot, lambda: pane.chat_id == a, "chat A open")
        await send(pilot, "hello")  # alpha loads
        await wait_idle(pilot)
        pane.post_message(ChatList.Opened(b))  # beta's chat: alpha stays loaded
        await until(pilot, lambda: pane.chat_id == b, "chat B open again")
        seen = record_notifications(app)
        screen = await memory_runs_short(pilot, now)
        assert screen.model == "alpha.gguf"  # the model loaded, not the open chat's
        await pilot.press("r")
        await wait_idle(pilot)
        assert seen == ["Memory: reloading alpha.gguf with a context of 1024 tokens to free memory",
                        "Could not load alpha.gguf: alpha.gguf: no room"], seen
        assert not pane.engine.loaded and app.query_one(StatusLine).model_name is None


async def pick_beta_while_the_old_model_is_freed(tmp_path: Path, answer: str) -> None:
    """Alpha loaded; the guard answered with ``answer`` (its key) while the old backend closes slowly; beta picked
    meanwhile (Ctrl+T's choice): it loads only once alpha is freed, and goes in place of any reload."""
    SlowClose.gate, SlowClose.hold, SlowClose.events = threading.Semaphore(0), True, []
    alpha, beta = model_file(tmp_path, "alpha.gguf"), model_file(tmp_path, "beta.gguf")
    with ChatStore() as store:
        store.create_chat("Alpha", model=str(alpha))
    now = [OK]
    app = chat_app(tmp_path, ctx=2048, memory_probe=lambda: now[0], chat_backend=SlowClose)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: pane.model_path == alpha, "the chat open")
        await send(pilot, "hello")
        await wait_idle(pilot)
        seen = record_notifications(app)
        await memory_runs_short(pilot, now)
        await pilot.press(answer)  # the old backend closes slowly
        await until(pilot, lambda: pane.model_loading, "the guard's answer acted on")
        pane.use_model(beta)
        await pilot.pause(HELD_S)
        while_held = list(SlowClose.events)
        SlowClose.gate.release()  # (before asserting: a failure must not leave the close held)
        assert while_held == ["load alpha.gguf ctx 2048"], while_held  # beta waits: alpha is still in memory
        await wait_idle(pilot)
        # (a reload, had it been tried, would have loaded alpha with a context of 1024)
        assert SlowClose.events == ["load alpha.gguf ctx 2048", "old closed", "load beta.gguf ctx 2048"]
        assert pane.engine.model_path == str(beta) and pane.engine.n_ctx == 2048
        assert app.query_one(StatusLine).model_name == "beta.gguf · ctx 0/2048"
        assert not any(note.startswith("Could not") for note in seen), seen


@run_async
async def test_a_model_picked_while_the_reload_waits_goes_in_its_place(tmp_path: Path) -> None:
    await pick_beta_while_the_old_model_is_freed(tmp_path, "r")


@run_async
async def test_a_model_picked_while_the_unload_frees_the_old_one_loads_after_it(tmp_path: Path) -> None:
    await pick_beta_while_the_old_model_is_freed(tmp_path, "u")
