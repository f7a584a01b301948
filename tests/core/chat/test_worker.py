"""A chat session's worker (core.chat.worker): jobs in order on one thread at a time, which ends once none waits
(an idle session holds no thread, and so no OpenMP team of llama.cpp's: see the module)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.worker import Worker
from tuillm.core.llama.options import LoadOptions, Sampling


def chat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tuillm-chat"]


def test_jobs_run_in_order_one_at_a_time_and_the_thread_ends_when_idle() -> None:
    worker = Worker("tuillm-test")
    gate = threading.Event()
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        if i == 0:
            gate.wait(10)
        seen.append((i, threading.current_thread().name))
        return i * 10

    futures = [worker.submit(job, i) for i in range(5)]
    busy = [t for t in threading.enumerate() if t.name == "tuillm-test"]
    assert len(busy) == 1  # one thread for all five, while they wait behind the first
    gate.set()
    assert [f.result(10) for f in futures] == [0, 10, 20, 30, 40]
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4] and {name for _, name in seen} == {"tuillm-test"}
    busy[0].join(10)
    assert not busy[0].is_alive()  # nothing waiting: the thread ended
    assert worker.submit(job, 7).result(10) == 70  # and a new job starts another
    worker.shutdown()
    with pytest.raises(RuntimeError):
        worker.submit(job, 8)


def test_a_failing_job_fails_its_future_and_the_next_still_runs() -> None:
    worker = Worker("tuillm-test")

    def boom() -> None:
        raise ValueError("bad")

    failed, fine = worker.submit(boom), worker.submit(lambda: "ok")
    with pytest.raises(ValueError, match="bad"):
        failed.result(10)
    assert fine.result(10) == "ok"
    worker.shutdown()


def test_a_session_holds_no_thread_between_replies(demo_gguf: Path) -> None:
    with ChatSession() as session:
        session.load(demo_gguf, LoadOptions(n_ctx=512)).result()
        done = session.reply([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4, temperature=0.0))
        assert done.result().stats.generated_tokens > 0
        for thread in chat_threads():
            thread.join(10)
        assert chat_threads() == []
        # The model and its evaluated prompt stay: the next reply reuses the cache on a new thread.
        again = session.reply([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4, temperature=0.0))
        assert again.result().stats.cached_tokens > 0
