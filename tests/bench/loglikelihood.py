"""Log-likelihood scoring as an evaluation harness sends it: ``tuillm serve``'s completions with ``echo``, against
the same requests with nothing shared, in one run, on the demo model.

lm-eval's ``local-completions`` scores each (context, choice) pair in a request of its own: the prompt is the
few-shot context, the question and one choice; ``echo`` with ``logprobs: 1`` and ``max_tokens: 1`` returns every
prompt token's log-probability. An evaluation's requests share their few-shot context, so the server keeps the
scores of a prefix shared with the last scored prompt and decodes only the rest. Measured:
  shared     8 questions x 4 choices after the same 16-shot context, in lm-eval's order (longest first)
  unshared   the same requests with the shots rotated by one for each request, so that no two in a row share a
             prefix: as many tokens, each prompt scored whole (the baseline)
Runs are interleaved, the order alternating each round; each figure is the median of its runs, and the ratio
shared/unshared of the medians is printed (below 1: the shared context is not scored again).

Run: .venv/bin/python tests/bench/loglikelihood.py [--runs N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from openai import OpenAI  # noqa: E402

from tests.bench.serve import start_server  # noqa: E402
from tuillm.core.models.hardware import default_threads  # noqa: E402

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Chile", "Santiago"),
            ("Greece", "Athens"), ("Poland", "Warsaw"), ("Cuba", "Havana"), ("Ireland", "Dublin"),
            ("Austria", "Vienna"), ("Portugal", "Lisbon"), ("Canada", "Ottawa"), ("Sweden", "Stockholm"),
            ("Russia", "Moscow"), ("Turkey", "Ankara"), ("India", "New Delhi"), ("China", "Beijing"),
            ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires")]
SHOTS = [f"Question: What is the capital of {country}?\nAnswer: {capital}\n\n" for country, capital in CAPITALS[:16]]
QUESTIONS = CAPITALS[16:]


def requests(rotate: bool) -> list[str]:
    """Every (question, choice) prompt; rotated: each request's shots start one further on."""
    prompts = []
    for q, (country, capital) in enumerate(QUESTIONS):
        others = [c for _, c in QUESTIONS if c != capital]
        for k, choice in enumerate([capital, *others[q % 5:q % 5 + 3]]):
            n = (4 * q + k) % len(SHOTS) if rotate else 0
            shots = "".join(SHOTS[n:] + SHOTS[:n])
            prompts.append(f"{shots}Question: What is the capital of {country}?\nAnswer: {choice}")
    return prompts if rotate else sorted(prompts, key=lambda p: (-len(p), p))


def score_all(client: OpenAI, prompts: list[str]) -> float:
    """Seconds to score every prompt, one request each, as lm-eval does with batch size 1."""
    t0 = time.perf_counter()
    for prompt in prompts:
        reply = client.completions.create(model="demo", prompt=prompt, echo=True, logprobs=1, max_tokens=1,
                                          temperature=0)
        assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.token_logprobs[1] is not None
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="decode threads (default: tuillm's)")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    kinds = {"shared": requests(rotate=False), "unshared": requests(rotate=True)}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as scratch:
        server, client = start_server(threads, Path(scratch) / "config.toml")
        try:
            score_all(client, kinds["shared"][:1])  # loads the model: loading is not what is measured
            for round_ in range(args.runs):
                for kind in (kinds if round_ % 2 == 0 else reversed(list(kinds))):
                    times[kind].append(score_all(client, kinds[kind]))
        finally:
            server.terminate()
            server.wait()
    n = len(kinds["shared"])
    shared, unshared = (statistics.median(times[kind]) for kind in kinds)
    print(f"threads {threads}; {args.runs} runs each of {n} requests (median seconds)")
    print(f"shared context  {shared:6.2f} s   {n / shared:5.1f} requests/s")
    print(f"unshared        {unshared:6.2f} s   {n / unshared:5.1f} requests/s")
    print(f"shared/unshared: {shared / unshared:.2f}x the time (below 1: a shared context is not scored again)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
