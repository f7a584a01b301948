"""Two chat sessions in one process, used in turn: does one session's decoding slow the other's?

llama.cpp's OpenMP threads slow every decode of a process to about a third once more threads than CPUs are held
by threads that have decoded (core.chat.worker). The A/B view, a server with several models and the app's chat
beside its server each hold one session per model. On the demo model, each round times a reply of session A right
after one of session B, both in this process, against the same reply in a fresh process that holds one session
only (the baseline, in the same round), and prints the median decode tokens/s of each and their ratio (goal ~1.0:
a session used in turn costs the other nothing); then, for information, A and B replying at once.

Run: .venv/bin/python tests/bench/sessions.py [--runs N] [--tokens N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import run_child  # noqa: E402
from tuillm.core.chat.engine import ChatSession  # noqa: E402
from tuillm.core.llama.options import LoadOptions, Sampling  # noqa: E402
from tuillm.core.paths import demo_model_path  # noqa: E402

QUESTION = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]

ALONE = """
import json, sys
from tests.bench.sessions import rate, sampling_for
from tuillm.core.chat.engine import ChatSession
from tuillm.core.llama.options import LoadOptions
from tuillm.core.paths import demo_model_path
with ChatSession() as session:
    session.load(str(demo_model_path()), LoadOptions(n_ctx=2048)).result()
    sampling = sampling_for(int(sys.argv[1]))
    rate(session, sampling)  # warm-up, as the sessions of the parent are
    print(json.dumps({"tps": rate(session, sampling)}))
"""


def sampling_for(tokens: int) -> Sampling:
    return Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens)


def rate(session: ChatSession, sampling: Sampling) -> float:
    session.reset_cache().result()
    return session.reply(QUESTION, sampling).result().stats.tokens_per_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    sampling = sampling_for(args.tokens)
    alone: list[float] = []
    in_turn: list[float] = []
    together: list[float] = []
    with ChatSession() as a, ChatSession() as b:
        for session in (a, b):
            session.load(str(demo_model_path()), LoadOptions(n_ctx=2048)).result()
            rate(session, sampling)  # warm-up
        for run in range(args.runs):
            if run % 2:
                alone.append(run_child(ALONE, str(args.tokens))["tps"])
            rate(b, sampling)
            in_turn.append(rate(a, sampling))
            if not run % 2:
                alone.append(run_child(ALONE, str(args.tokens))["tps"])
        for _ in range(args.runs):
            fa, fb = a.reply(QUESTION, sampling), b.reply(QUESTION, sampling)
            together.append(fa.result().stats.tokens_per_s + fb.result().stats.tokens_per_s)
    base, turn = statistics.median(alone), statistics.median(in_turn)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs, {args.tokens} tokens")
    print(f"one session alone in its process: {base:.1f} tok/s   A right after B: {turn:.1f} tok/s")
    print(f"ratio {turn / base:.3f} (goal ~1.0; ~0.33 while B's thread outlived its work)")
    print(f"A and B at once: {statistics.median(together):.1f} tok/s together")
    return 0


if __name__ == "__main__":
    sys.exit(main())
