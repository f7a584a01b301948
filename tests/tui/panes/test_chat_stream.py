"""The draw cadence of streaming text (``DrawPace``: the Chat pane's and the A/B view's): the event loop's CPU
between draws sets the next interval, within its bounds. The CPU clock is replaced by one the test advances, so the
numbers are exact."""

from __future__ import annotations

import pytest

from tuillm.tui.panes import chat_stream
from tuillm.tui.panes.chat_stream import (
    DRAW_INTERVAL_S,
    LOOP_BUDGET,
    MAX_DRAW_INTERVAL_S,
    DrawPace,
)


class CpuClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> CpuClock:
    clock = CpuClock()
    monkeypatch.setattr(chat_stream.time, "thread_time", clock)
    return clock


@pytest.fixture
def stream(clock: CpuClock) -> DrawPace:
    return DrawPace()


def paced(stream: DrawPace, clock: CpuClock, cpu_s: float) -> float:
    """The interval after a draw cycle in which the event loop took ``cpu_s`` of CPU."""
    clock.now += cpu_s
    return stream.next()


def test_cheap_draws_keep_the_shortest_interval(stream: DrawPace, clock: CpuClock) -> None:
    stream.begin()
    for _ in range(5):
        assert paced(stream, clock, DRAW_INTERVAL_S * LOOP_BUDGET / 2) == DRAW_INTERVAL_S


def test_costly_draws_stretch_the_interval_halfway_each_time_up_to_its_ceiling(stream: DrawPace,
                                                                                clock: CpuClock) -> None:
    stream.begin()
    wanted = 0.16  # a cycle's CPU over the budget: between the bounds
    first = paced(stream, clock, wanted * LOOP_BUDGET)
    assert first == pytest.approx((DRAW_INTERVAL_S + wanted) / 2)
    assert paced(stream, clock, wanted * LOOP_BUDGET) == pytest.approx((first + wanted) / 2)
    for _ in range(20):  # far over the budget (a layout every draw): never beyond the ceiling
        interval = paced(stream, clock, 1.0)
        assert interval <= MAX_DRAW_INTERVAL_S
    assert interval == pytest.approx(MAX_DRAW_INTERVAL_S, rel=1e-3)
    for _ in range(20):  # cheap again: back down to the shortest
        interval = paced(stream, clock, 0.0)
    assert interval == pytest.approx(DRAW_INTERVAL_S, rel=1e-3)


def test_a_reply_counts_the_cpu_from_its_start(stream: DrawPace, clock: CpuClock) -> None:
    clock.now += 50.0  # the app's work before the reply (loading, typing) is not the reply's drawing
    stream.begin()
    assert paced(stream, clock, 0.0) == DRAW_INTERVAL_S
