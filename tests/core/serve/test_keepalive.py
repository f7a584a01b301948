"""KeepAlive: how long a loaded model (the chat's or the embedding context) stays after its last use."""

from __future__ import annotations

import asyncio
import math

from tuillm.core.serve.keepalive import KeepAlive


def test_the_last_requests_keep_alive_wins_over_the_servers_idle_unload() -> None:
    idle = [0.0]
    keeper = KeepAlive(lambda: idle[0])
    assert keeper.keep_s() == math.inf  # idle_unload 0: for ever
    idle[0] = 300.0
    assert keeper.keep_s() == 300.0  # read at each check: the server's setting
    keeper.keep = 5.0
    assert keeper.keep_s() == 5.0 and 4.0 < keeper.expires_in() <= 5.0
    keeper.keep = 0.0
    assert keeper.expires_in() == 0.0 and keeper.due()


def test_never_due_while_work_uses_the_model() -> None:
    keeper = KeepAlive(lambda: 0.0)
    keeper.keep = 0.0
    keeper.begin()
    assert keeper.expires_in() == 0.0 and not keeper.due()  # keep_alive 0: once the work queued is done
    keeper.end()
    assert keeper.due()


def test_an_idle_model_is_unloaded_once_and_a_kept_one_never() -> None:
    async def run(keep: float | None) -> int:
        keeper, unloads, loaded = KeepAlive(lambda: 0.0), [], [True]
        keeper.keep = keep

        async def unload() -> None:
            unloads.append(1)
            loaded[0] = False

        task = asyncio.create_task(keeper.unload_when_idle(lambda: loaded[0], asyncio.Lock(), unload))
        for _ in range(100):  # bounded: the check runs every MIN_CHECK_S for keep_alive 0
            await asyncio.sleep(0.01)
            if unloads:
                break
        await asyncio.sleep(0.2)  # a second check finds nothing loaded
        task.cancel()
        return len(unloads)

    assert asyncio.run(run(0.0)) == 1
    assert asyncio.run(run(None)) == 0  # idle_unload 0 and no keep_alive: kept
