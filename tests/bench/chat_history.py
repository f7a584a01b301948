"""Long chats: opening a chat of 10, 200 and 1,000 messages, and the keys in it, in the real app (App.run_test at
80x24, a real SQLite store in a scratch folder).

The chats hold a realistic mix (questions; answers with paragraphs, lists and fenced code blocks). Each round opens
every chat once, in a rotating order, the way the chat list's Enter does (``ChatList.Opened``), and times:
  open    from the request until the chat's newest message is mounted and the app is idle (drawn)
  select  one ↑ in the messages view (the selection walks up through the messages, mounting more as it goes)
  type    one key typed in the prompt
Prints the median of each per chat size and the ratio of the 1,000-message chat to the 10-message one (goal for
opening: <= 2x; the keys should not depend on the length at all).

Run: .venv/bin/python tests/bench/chat_history.py [--rounds N] [--keys N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SIZES = (10, 200, 1000)
BASELINE = 10
GOAL = 2.0  # the 1,000-message chat opens in at most twice the 10-message one's time (issue 12)
WAIT_S = 60.0  # a bound on one step, only so a broken app ends the bench instead of hanging it


async def until(pilot, ready, what: str) -> None:
    deadline = time.perf_counter() + WAIT_S
    while not ready():
        if time.perf_counter() > deadline:
            raise SystemExit(f"never happened: {what}")
        await pilot.pause()


async def open_chat(pilot, chat_id: int, count: int) -> float:
    from tuillm.tui.widgets.chat_list import ChatList
    from tuillm.tui.widgets.chat_messages import ChatView

    pane, view = pilot.app.query_one("#pane-chat"), pilot.app.query_one(ChatView)
    t0 = time.perf_counter()
    pane.post_message(ChatList.Opened(chat_id))
    await until(pilot, lambda: pane.chat_id == chat_id and len(view.messages) == count
                and view.end == count and not view._growing, "the chat shown")
    await pilot.pause()
    return time.perf_counter() - t0


async def key_times(pilot, key: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await pilot.press(key)
        times.append(time.perf_counter() - t0)
    return times


async def one_round(pilot, chats: dict[int, int], order: list[int], keys: int,
                    rows: dict[int, dict[str, list[float]]]) -> None:
    from tuillm.tui.widgets.chat_messages import ChatView

    app = pilot.app
    for count in order:
        rows[count]["open"].append(await open_chat(pilot, chats[count], count))
        app.query_one(ChatView).focus()
        await pilot.pause()
        # Moves only: ↑ on the first message does nothing (the 10-message chat would time no-ops).
        rows[count]["select"].extend(await key_times(pilot, "up", min(keys, count - 1)))
        prompt = app.query_one("#chat-prompt")
        prompt.focus()
        await pilot.pause()
        rows[count]["type"].extend(await key_times(pilot, "a", keys))
        prompt.clear()  # no draft left to save


async def measure(args: argparse.Namespace) -> dict[int, dict[str, list[float]]]:
    from tests.tui.widgets.long_chat import seed_long_chat
    from tuillm.core.chat.store import ChatStore
    from tuillm.core.settings import Config
    from tuillm.tui.app import TuillmApp

    rows: dict[int, dict[str, list[float]]] = {n: {"open": [], "select": [], "type": []} for n in SIZES}
    with tempfile.TemporaryDirectory() as home:
        for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            os.environ[var] = str(Path(home) / var.lower())  # the app's store and settings in a scratch folder
        with ChatStore() as store:
            chats = {n: seed_long_chat(store, n, title=f"{n} messages") for n in SIZES}
        app = TuillmApp(Config(model_dirs=[Path(home)]), status_interval=0)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            for count in SIZES:  # warm: Markdown's first parse, the styles of every widget
                await open_chat(pilot, chats[count], count)
            for r in range(args.rounds):
                order = list(SIZES[r % len(SIZES):] + SIZES[:r % len(SIZES)])
                await one_round(pilot, chats, order, args.keys, rows)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=20, help="keys timed per chat and round, of each kind")
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    med = {n: {k: statistics.median(v) * 1000 for k, v in rows[n].items()} for n in SIZES}
    print(f"rounds: {args.rounds}, keys per chat and round: {args.keys}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'messages':>8} {'open ms':>9} {'↑ ms':>7} {'type ms':>8}")
    for n in SIZES:
        print(f"{n:8} {med[n]['open']:9.1f} {med[n]['select']:7.1f} {med[n]['type']:8.1f}")
    base, top = med[BASELINE], med[SIZES[-1]]
    ratio = top["open"] / base["open"]
    print(f"open {SIZES[-1]}/{BASELINE}: {ratio:.2f}x (goal <= {GOAL:.0f}x){'' if ratio <= GOAL else '  MISSED'}")
    print(f"↑ {SIZES[-1]}/{BASELINE}: {top['select'] / base['select']:.2f}x  "
          f"type {SIZES[-1]}/{BASELINE}: {top['type'] / base['type']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
