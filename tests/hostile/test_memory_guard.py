"""The runtime memory guard, driven by an injected memory probe (never the machine's real figures): the policy's
thresholds, the status line's warning, the Chat pane's offer to unload or reload with a smaller context when another
program eats the memory, and training that saves a checkpoint and stops before it runs out (`--resume` continues).

Figures on a 16 GiB machine: the status line warns under 1.6 GiB available, the floor is 819 MiB.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tests.hostile.test_outputs import run_cli
from tests.tui.app_helpers import GIB, make_app, run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, record_notifications, saved_reply, send
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.backend import ChatMessage
from tuillm.core.chat.events import ChatEmit, ChatEvent, Token
from tuillm.core.llama.options import Sampling
from tuillm.core.models import guard, hardware
from tuillm.core.models.hardware import Memory
from tuillm.tui.screens.memory import MemoryScreen
from tuillm.tui.widgets.status_line import MemorySample, StatusLine

MIB = 2**20
TOTAL = 16 * GIB
OK = MemorySample(used=3 * GIB, total=TOTAL, rss=150 * MIB)
LOW = MemorySample(used=15 * GIB, total=TOTAL, rss=150 * MIB)
CRITICAL = MemorySample(used=TOTAL - 300 * MIB, total=TOTAL, rss=150 * MIB)
SITUATION = "available memory is 300 MiB of 16.0 GiB (the floor is 819 MiB)"


# --- the policy -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("total", "available", "level"), [
    (16 * GIB, 13 * GIB, "ok"),
    (16 * GIB, int(1.6 * GIB), "ok"),  # exactly at the warning threshold: not under it
    (16 * GIB, int(1.6 * GIB) - 1, "low"),
    (16 * GIB, int(0.8 * GIB), "low"),  # exactly at the floor
    (16 * GIB, int(0.8 * GIB) - 1, "critical"),
    (16 * GIB, 0, "critical"),
    (4 * GIB, 600 * MIB, "ok"),  # small machine: at least 512 MiB to warn, 256 MiB to act
    (4 * GIB, 500 * MIB, "low"),
    (4 * GIB, 200 * MIB, "critical"),
    (512 * GIB, 5 * GIB, "ok"),  # big machine: at most 4 GiB to warn, 2 GiB to act
    (512 * GIB, 3 * GIB, "low"),
    (512 * GIB, 1 * GIB, "critical"),
], ids=lambda v: str(v))
def test_levels(total: int, available: int, level: str) -> None:
    assert guard.level(Memory(available=available, total=total)) == level


@pytest.mark.parametrize(("total", "low", "floor"), [
    (16 * GIB, int(1.6 * GIB), int(0.8 * GIB)),
    (2 * GIB, 512 * MIB, 256 * MIB),
    (1024 * GIB, 4 * GIB, 2 * GIB),
])
def test_thresholds_are_a_share_kept_in_bounds(total: int, low: int, floor: int) -> None:
    assert (guard.low_threshold(total), guard.floor(total)) == (low, floor)


def test_describe() -> None:
    assert guard.describe(CRITICAL.memory) == SITUATION


@pytest.mark.parametrize("reading", [
    Memory(available=1, total=0),  # no total: a sandbox's /proc
    Memory(available=-1, total=TOTAL),
    Memory(available=TOTAL + 1, total=TOTAL),
], ids=["no-total", "negative", "more-than-total"])
def test_a_senseless_reading_is_no_reading(reading: Memory) -> None:
    assert guard.sample(lambda: reading) is None


@pytest.mark.parametrize("error", [OSError(5, "Input/output error"), psutil.AccessDenied()], ids=["oserror", "psutil"])
def test_a_failing_probe_is_no_reading(error: Exception) -> None:
    def probe() -> Memory:
        raise error

    assert guard.sample(probe) is None


def test_the_watch_fires_once_per_drop() -> None:
    watch = guard.CriticalWatch()
    seen = [watch.crossed(s.memory) for s in (OK, CRITICAL, CRITICAL, LOW, CRITICAL, OK, LOW, CRITICAL)]
    # Hovering between low and critical does not ask again; only a recovery to ok re-arms it.
    assert seen == [False, True, False, False, False, False, False, True]


@pytest.mark.parametrize(("n_ctx", "smaller"), [(4096, 2048), (1024, 512), (1023, None), (512, None), (0, None)])
def test_smaller_context(n_ctx: int, smaller: int | None) -> None:
    assert guard.smaller_context(n_ctx) == smaller


# --- the status line ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sample", "text", "classes"), [
    (OK, "RAM 3.0/16.0 GiB · tuillm 150 MiB", set()),
    (LOW, "RAM 15.0/16.0 GiB · low: 1.0 GiB free", {"-low"}),
    (CRITICAL, "RAM 15.7/16.0 GiB · critical: 300 MiB free", {"-critical"}),
], ids=["ok", "low", "critical"])
@run_async
async def test_the_status_line_warns(sample: MemorySample, text: str, classes: set[str]) -> None:
    now = [OK]
    app = make_app([], memory_probe=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        status = app.query_one(StatusLine)
        now[0] = sample
        status.refresh_memory()
        await pilot.pause()
        label = status.query_one("#status-ram")
        assert str(label.content) == text
        assert set(label.classes) & {"-low", "-critical"} == classes
        now[0] = OK  # memory comes back: so does the plain figure
        status.refresh_memory()
        await pilot.pause()
        assert str(label.content) == "RAM 3.0/16.0 GiB · tuillm 150 MiB" and not label.classes


@run_async
async def test_critical_with_no_model_is_one_warning() -> None:
    now = [OK]
    app = make_app([], memory_probe=lambda: now[0], chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        seen = record_notifications(app)
        for sample in (CRITICAL, CRITICAL, LOW, CRITICAL):
            now[0] = sample
            app.status_line.refresh_memory()
            await pilot.pause()
        assert seen == [f"Memory: {SITUATION}: the system may soon stop a program"]
        assert not isinstance(app.screen, MemoryScreen)


# --- chat -----------------------------------------------------------------------------------------------------

class SlowBackend(FakeBackend):
    """The fake backend at a human reading pace, so a reply is still streaming when memory runs short."""

    def __init__(self, emit: ChatEmit, tokens: Sequence[str] = ("word ",) * 400) -> None:
        super().__init__(emit, tokens)
        self.closed = threading.Event()

    def reply(self, messages: Sequence[ChatMessage], sampling: Sampling | None = None,
              listener: ChatEmit | None = None):
        def slow(event: ChatEvent) -> None:
            if isinstance(event, Token):
                time.sleep(0.02)
            if listener is not None:
                listener(event)

        return super().reply(messages, Sampling(max_tokens=400), slow)

    def close(self) -> None:
        super().close()
        self.closed.set()


async def _loaded(pilot, path: Path) -> None:
    pane = chat_pane(pilot.app)
    pane.use_model(path)
    await until(pilot, lambda: pane.engine.loaded and not pane.model_loading, "the model loaded")


async def _memory_runs_short(pilot, now: list[MemorySample]) -> MemoryScreen:
    """Memory falls under the floor: the offer is on screen."""
    now[0] = CRITICAL
    pilot.app.status_line.refresh_memory()
    await until(pilot, lambda: isinstance(pilot.app.screen, MemoryScreen), "the memory offer")
    return pilot.app.screen


@run_async
async def test_unload_frees_the_model(tmp_path: Path, demo_gguf: Path) -> None:
    now = [OK]
    app = chat_app(tmp_path, ctx=2048, memory_probe=lambda: now[0], chat_backend=SlowBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await _loaded(pilot, demo_gguf)
        old = pane.engine
        seen = record_notifications(app)
        screen = await _memory_runs_short(pilot, now)
        assert (screen.situation, screen.model, screen.n_ctx, screen.smaller) == (SITUATION, "demo", 2048, 1024)
        await pilot.press("u")
        await until(pilot, lambda: not pane.model_loading, "the unload")
        assert old.closed.is_set() and pane.engine is not old and not pane.engine.loaded
        assert app.status_line.model_name is None
        assert seen == ["Memory: unloading demo to free memory; the next message loads it again"]
        # The next message loads it again, with the full context.
        now[0] = OK
        await send(pilot, "hello")
        await until(pilot, lambda: pane.engine.loaded and pane.busy, "the reload by a message")
        assert pane.engine.n_ctx == 2048
        pane.action_stop()


@run_async
async def test_a_streaming_reply_goes_on_until_the_answer_then_stops(tmp_path: Path, demo_gguf: Path) -> None:
    """While the offer is shown the reply streams on (the KV cache was allocated at load: nothing grows); unloading
    stops it as Esc does, and what came so far is saved."""
    now = [OK]
    app = chat_app(tmp_path, ctx=2048, memory_probe=lambda: now[0], chat_backend=SlowBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await _loaded(pilot, demo_gguf)
        await send(pilot, "tell me a long story")
        await until(pilot, lambda: pane.busy and pane.stream.tokens > 0, "the reply streaming")
        await _memory_runs_short(pilot, now)
        before = pane.stream.tokens
        await until(pilot, lambda: pane.stream.tokens > before + 5, "the reply going on under the offer")
        await pilot.press("u")
        await until(pilot, lambda: not pane.busy and not pane.model_loading, "the reply stopped and unloaded")
        assert 0 < saved_reply().count("word") < 400
        assert not pane.engine.loaded


@run_async
async def test_keep_asks_again_only_after_memory_came_back(tmp_path: Path, demo_gguf: Path) -> None:
    now = [OK]
    app = chat_app(tmp_path, ctx=2048, memory_probe=lambda: now[0], chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await _loaded(pilot, demo_gguf)
        engine = pane.engine
        await _memory_runs_short(pilot, now)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, MemoryScreen) and pane.engine is engine and engine.loaded
        for sample in (CRITICAL, LOW, CRITICAL):  # still short: no second question
            now[0] = sample
            app.status_line.refresh_memory()
            await pilot.pause()
        assert not isinstance(app.screen, MemoryScreen)
        now[0] = OK
        app.status_line.refresh_memory()
        await _memory_runs_short(pilot, now)  # a new drop: asked again
        await pilot.press("k")
        await pilot.pause()
        assert pane.engine is engine and engine.loaded


@run_async
async def test_small_context_offers_only_unload(tmp_path: Path, demo_gguf: Path) -> None:
    now = [OK]
    app = chat_app(tmp_path, ctx=512, memory_probe=lambda: now[0], chat_backend=FakeBackend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await _loaded(pilot, demo_gguf)
        screen = await _memory_runs_short(pilot, now)
        assert screen.smaller is None
        await pilot.press("r")  # not offered: nothing happens
        await pilot.pause()
        assert app.screen is screen and pane.engine.loaded
        await pilot.press("u")
        await until(pilot, lambda: not pane.model_loading and not pane.engine.loaded, "the unload")


@pytest.mark.slow
@run_async
async def test_reload_with_a_smaller_context_on_llama_cpp(tmp_path: Path, demo_gguf: Path) -> None:
    """The real engine: the demo model reloaded with half the context, and it still answers."""
    now = [OK]
    app = chat_app(tmp_path, ctx=1024, memory_probe=lambda: now[0])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await _loaded(pilot, demo_gguf)
        assert pane.engine.n_ctx == 1024
        seen = record_notifications(app)
        await _memory_runs_short(pilot, now)
        await pilot.press("r")
        await until(pilot, lambda: not pane.model_loading and pane.engine.loaded, "the reload")
        assert pane.engine.n_ctx == 512
        assert app.status_line.model_name == "demo · ctx 0/512"
        assert seen == ["Memory: reloading demo with a context of 512 tokens to free memory"]
        now[0] = OK
        await send(pilot, "What is the capital of France?")
        await until(pilot, lambda: bool(saved_reply()) and not pane.busy, f"the reply {seen}")


# --- training -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def _train_args(tiny: Path, tmp_path: Path, out: Path) -> list[str]:
    data = write_fact_dataset(tmp_path / "fact.jsonl", 12)
    return ["train", str(tiny), "--data", str(data), "-o", str(out), "--rank", "4", "--max-len", "64",
            "--batch-size", "2", "--grad-accum", "2", "--epochs", "2", "--save-every", "0", "--seed", "7",
            "--device", "cpu", "-q"]


@pytest.mark.slow
def test_training_stops_with_a_checkpoint_under_the_floor(tiny: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program grows during step 3: the run saves step 3 and stops with one line (exit 1); --resume, with
    memory back, finishes it."""
    readings = iter([OK.memory, OK.memory])

    def probe() -> Memory:
        return next(readings, CRITICAL.memory)

    out = tmp_path / "adapter"
    monkeypatch.setattr(hardware, "read_memory", probe)
    code, stdout, stderr = run_cli(_train_args(tiny, tmp_path, out), capsys)
    root = out / "checkpoints"
    assert (code, stdout) == (1, "")
    assert stderr == (f"tuillm: {SITUATION}: stopped after step 3 with a checkpoint in {root}/step-0000003 (free "
                      "some memory, then --resume, or Resume in the Train pane, continues it)\n")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    assert sorted(p.name for p in root.iterdir()) == ["step-0000003"]

    monkeypatch.setattr(hardware, "read_memory", lambda: OK.memory)
    code, stdout, stderr = run_cli([*_train_args(tiny, tmp_path, out), "--resume"], capsys)
    assert (code, stdout) == (0, f"{out}\n"), stderr
    assert (out / "adapter_config.json").is_file() and not root.exists()
    assert not [p for p in out.rglob(".*")]


@pytest.mark.slow
def test_training_ignores_a_probe_that_cannot_say(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def probe() -> Memory:
        raise OSError(2, "No such file or directory", "/proc/meminfo")

    out = tmp_path / "adapter"
    monkeypatch.setattr(hardware, "read_memory", probe)
    assert run_cli(_train_args(tiny, tmp_path, out), capsys)[:2] == (0, f"{out}\n")

