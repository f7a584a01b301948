"""Chat speed: the engine against raw llama-cpp-python streaming on the demo model, in one run.

Prints decode tokens/s and time to first token (TTFT) of
  raw     llama_cpp.Llama.create_chat_completion(stream=True)
  engine  tuillm.core.chat.engine.ChatSession (worker thread, events, stop checks)
  TUI     the headless app (App.run_test) streaming a reply in the Chat pane, timed where the pane takes the
          streamed text to draw it (from Enter to the first token there, and the tokens drawn per second after it),
          with the share of a core its event loop took while the reply streamed, the CPU per draw and how often
          it drew (the interval stretches from 0.1 to 0.2 s where drawing is costly: DrawPace)
and the ratios engine/raw and TUI/raw (goal >= 0.97 for decode tokens/s), then second-turn TTFT with prefix reuse
against the same prompt evaluated fresh. All load the model with the same options (the same thread count: tuillm's
default, ``core.models.hardware.default_threads``, or --threads) and decode greedily, so they produce the same
tokens; runs are interleaved, the order rotating each round (raw, engine, TUI; then engine, TUI, raw; ...) so that
none is always first after the others' work, and the median of each is reported. A ratio is the median of each
round's own ratio: the three runs of a round follow each other within seconds, while this machine's speed drifts by
±5% over a minute (the ratio of the medians, printed beside it, compares runs up to a minute apart).

Each of the three runs in a process of its own, loaded once and told when to run (one line in, one JSON line out):
llama.cpp's OpenMP build throttles its threads' spin-waiting once more threads than CPUs have run parallel work in
a process, so three contestants decoding from three threads of one process all ran at half speed (~64 against
~140 tok/s here) and the ratios compared throttled runs.

Run: .venv/bin/python tests/bench/chat.py [--runs N] [--tokens N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tuillm.core.chat.engine import ChatSession
from tuillm.core.llama.loader import new_llama
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.models.hardware import default_threads
from tuillm.core.paths import demo_model_path

N_CTX = 2048
QUESTION = [{"role": "system", "content": "You are a storyteller."},
            {"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]
# A long first turn makes prefix reuse visible: the second turn only evaluates the new question.
LONG_SYSTEM = "You are a helpful assistant. " + " ".join(
    f"Rule {i}: answer carefully, cite what you know, and keep a friendly tone." for i in range(40))


def raw_run(llm, max_tokens: int) -> tuple[float, float, int]:
    llm.reset()  # no KV reuse between runs: each measures a full prompt evaluation
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    n = 0
    for chunk in llm.create_chat_completion(QUESTION, stream=True, temperature=0.0, repeat_penalty=1.0,
                                            max_tokens=max_tokens):
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
            t_last = time.perf_counter()
            if n == 1:
                t_first = t_last
    return t_first - t0, (n - 1) / (t_last - t_first) if n > 1 else 0.0, n


def engine_run(session: ChatSession, max_tokens: int) -> tuple[float, float, int]:
    session.reset_cache().result()
    done = session.reply(QUESTION, Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=max_tokens)).result()
    st = done.stats
    return st.ttft_s, st.tokens_per_s, st.generated_tokens


class TuiProbe:
    """Times the streamed text as the Chat pane takes it on the event loop to draw it: (time, tokens so far, the
    event loop's CPU seconds so far: the draw is taken on its thread)."""

    def __init__(self) -> None:
        from tuillm.tui.panes.chat_stream import ReplyStream

        self.draws: list[tuple[float, int, float]] = []
        take = ReplyStream.take_text

        def timed(stream: ReplyStream) -> str:
            text = take(stream)
            if text and stream.bubble is not None:  # a reply is streaming into its bubble
                self.draws.append((time.perf_counter(), stream.tokens, time.thread_time()))
            return text

        ReplyStream.take_text = timed  # type: ignore[method-assign]


async def tui_run(pilot, probe: TuiProbe, max_tokens: int) -> tuple[float, float, int, float, float, float, float]:
    from textual import events

    pane = pilot.app.query_one("#pane-chat")
    await pane.action_new_chat()
    pane.draft_system = QUESTION[0]["content"]
    pane.draft_sampling = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=max_tokens)
    pane.engine.reset_cache().result()
    probe.draws.clear()
    t0 = time.perf_counter()
    pilot.app.query_one("#chat-prompt").text = QUESTION[1]["content"]
    # The key as a terminal sends it. Not pilot.press: it then waits for the process to go idle, polling every 20 ms
    # for up to 2 s, which a decoding process never is: its wake-ups were counted as the app's drawing.
    pilot.app.post_message(events.Key("enter", "\r"))
    while pane.busy or pane.model_loading or not probe.draws:
        await asyncio.sleep(0.1)  # the probe times the draws: waking more often would only load the event loop
    await pilot.pause()
    (t_first, n_first, _), (t_last, n_last, _) = probe.draws[0], probe.draws[-1]
    # The first draw holds the first token; the rate counts the tokens drawn after it over the time after it.
    rate = (n_last - n_first) / (t_last - t_first) if t_last > t_first else 0.0
    # What the event loop's thread took of a core while the reply streamed (the draws before the last, which may
    # come after the decode ended), and per draw: the CPU that drawing takes from llama.cpp's threads.
    (w0, _, c0), (w1, _, c1) = probe.draws[0], probe.draws[max(len(probe.draws) - 2, 0)]
    draws = max(len(probe.draws) - 2, 1)
    share = (c1 - c0) / (w1 - w0) if w1 > w0 else 0.0
    spacing = (t_last - t_first) / max(len(probe.draws) - 1, 1)  # the draw cadence (DrawPace)
    # Also the engine's own decode speed inside the app: what drawing costs the generation itself.
    return (t_first - t0, rate, pane.last_stats["generated_tokens"], pane.last_stats["tokens_per_s"], share,
            (c1 - c0) / draws, spacing)


def second_turn(session: ChatSession) -> tuple[float, float, int, int]:
    """TTFT of turn two with the cache from turn one, and of the same prompt after a cache reset."""
    first = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Say hello."}]
    greedy = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=16)
    session.reset_cache().result()
    answer = session.reply(first, greedy).result().text
    turn2 = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "Now say goodbye."}]
    reused = session.reply(turn2, greedy).result().stats
    session.reset_cache().result()
    fresh = session.reply(turn2, greedy).result().stats
    return reused.ttft_s, fresh.ttft_s, reused.cached_tokens, reused.prompt_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds (default 9: fewer leave the median at the "
                        "mercy of one slow round on a noisy machine)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="decode threads for all three (default: "
                        "tuillm's own default)")
    parser.add_argument("--contestant", choices=CONTESTANTS, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.contestant:
        return asyncio.run(contestant(args))
    return measure(args)


CONTESTANTS = ("raw", "engine", "tui")


async def contestant(args: argparse.Namespace) -> int:
    """A child: loads its side, then answers each line of stdin ("run N", "second", "quit") with one JSON line."""
    path = str(demo_model_path())
    threads = args.threads or default_threads()
    with tempfile.TemporaryDirectory() as home:
        os.environ["XDG_DATA_HOME"] = home  # the app's chat database goes to a scratch folder
        if args.contestant == "raw":
            llm = new_llama(path, n_ctx=N_CTX, n_gpu_layers=0, n_threads=threads, verbose=False)
            await serve_commands(lambda n: raw_run(llm, n), None)
            llm.close()
        elif args.contestant == "engine":
            session = ChatSession()
            session.load(path, LoadOptions(n_ctx=N_CTX, n_gpu_layers=0, n_threads=args.threads)).result()
            await serve_commands(lambda n: engine_run(session, n), lambda: second_turn(session))
            session.close()
        else:
            from tuillm.core.settings import Config
            from tuillm.tui.app import TuillmApp

            app = TuillmApp(Config(default_ctx=N_CTX, threads=args.threads, model_dirs=[Path(home)]),
                            status_interval=0)
            async with app.run_test(size=(80, 24)) as pilot:
                pane = app.query_one("#pane-chat")
                pane.use_model(path)
                while pane.model_loading:
                    await asyncio.sleep(0.05)
                probe = TuiProbe()
                await serve_commands(lambda n: tui_run(pilot, probe, n), None)
    print(json.dumps({"bye": True}), flush=True)
    return 0


async def serve_commands(run, second) -> None:
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            return
        result = run(int(line[1])) if line[0] == "run" else second()
        if asyncio.iscoroutine(result):
            result = await result
        print(json.dumps(list(result)), flush=True)


class Child:
    """One contestant's process."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--contestant", kind, "--tokens", str(args.tokens)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.read()  # ready

    def read(self) -> list:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a contestant ended early (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> list:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.ask("quit")
        self.proc.wait()


def measure(args: argparse.Namespace) -> int:
    path = str(demo_model_path())
    threads = args.threads or default_threads()
    children = [Child(kind, args) for kind in CONTESTANTS]  # loaded one after the other, then all idle
    rows: tuple[list, list, list] = ([], [], [])
    try:
        for child in children:
            child.ask("run 8")  # warm each once (page cache, thread pools)
        for run in range(args.runs):
            for kind in ((run + i) % 3 for i in range(3)):
                rows[kind].append(children[kind].ask(f"run {args.tokens}"))
        reuse = [children[1].ask("second") for _ in range(args.runs)]
    finally:
        for child in children:
            child.close()

    def med(rows: list[list], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    def paired(a: list[list], b: list[list], i: int = 1, j: int = 1) -> float:
        """The median over the rounds of a's value over b's in the same round."""
        return statistics.median(x[i] / y[j] for x, y in zip(a, b, strict=True))

    raw_ttft, raw_tps = med(rows[0], 0), med(rows[0], 1)
    eng_ttft, eng_tps = med(rows[1], 0), med(rows[1], 1)
    tui_ttft, tui_tps = med(rows[2], 0), med(rows[2], 1)
    tui_engine_tps = med(rows[2], 3)
    loop_share, draw_cpu = med(rows[2], 4), med(rows[2], 5)
    print(f"demo model: {path}")
    print(f"threads: {threads}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"runs: {args.runs}, reply: up to {args.tokens} tokens (raw {rows[0][0][2]}, "
          f"engine {rows[1][0][2]}, TUI {rows[2][0][2]} generated); each in a process of its own")
    print(f"{'':8} {'decode tok/s':>13} {'TTFT ms':>9}")
    print(f"{'raw':8} {raw_tps:13.1f} {raw_ttft * 1000:9.1f}")
    print(f"{'engine':8} {eng_tps:13.1f} {eng_ttft * 1000:9.1f}")
    print(f"{'TUI':8} {tui_tps:13.1f} {tui_ttft * 1000:9.1f}   (tokens as drawn; the engine inside the app "
          f"decoded at {tui_engine_tps:.1f} tok/s)")
    print(f"TUI event loop while the reply streamed: {loop_share * 100:.1f}% of a core, {draw_cpu * 1000:.1f} ms CPU "
          f"per draw, a draw every {med(rows[2], 6) * 1000:.0f} ms")
    print(f"engine/raw decode tokens/s: {paired(rows[1], rows[0]):.3f}  (goal >= 0.97; ratio of the medians "
          f"{eng_tps / raw_tps:.3f})")
    print(f"TUI/raw decode tokens/s: {paired(rows[2], rows[0]):.3f}  (goal >= 0.97; ratio of the medians "
          f"{tui_tps / raw_tps:.3f}; the app's engine/raw: {paired(rows[2], rows[0], 3):.3f})")
    print(f"engine/raw TTFT: {paired(rows[1], rows[0], 0, 0):.3f}  TUI/raw TTFT: {paired(rows[2], rows[0], 0, 0):.3f}"
          "  (lower is better; 1.0 = same)")

    reused_ttft = statistics.median(r[0] for r in reuse)
    fresh_ttft = statistics.median(r[1] for r in reuse)
    print(f"second turn: {reuse[0][2]} of {reuse[0][3]} prompt tokens reused from the cache")
    print(f"second-turn TTFT: prefix reuse {reused_ttft * 1000:.1f} ms, fresh prompt {fresh_ttft * 1000:.1f} ms "
          f"(reuse/fresh {reused_ttft / fresh_ttft:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
