"""Decode speed by thread count: tuillm's default (``core.models.hardware.default_threads``) against the best
count on this machine, on the demo model, in one run.

Every count from 1 to the CPUs this process may use gets its own model (same options; only ``n_threads``
differs); rounds go through all of them in a rotating order, so a slow moment of the machine falls on each in
turn, and the median decode tokens/s of each is reported. A run evaluates the prompt (not timed) and then decodes
``--tokens`` tokens greedily, one at a time as a chat does. Prints default/best (goal >= 0.95) and what
llama-cpp-python would have used on its own (half the logical CPUs) against the best.

Run: .venv/bin/python tests/bench/threads.py [--runs N] [--tokens N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from tuillm.core.llama.loader import quiet_llama
from tuillm.core.models.hardware import default_threads, detect, usable_cpus
from tuillm.core.paths import demo_model_path

PROMPT = b"<|im_start|>user\nTell me a long story about a lighthouse keeper and a storm.<|im_end|>\n" \
         b"<|im_start|>assistant\n"


def decode_rate(llm: Any, prompt: list[int], tokens: int) -> float:
    """Decode tokens/s after a fresh prompt evaluation: sample one token, evaluate it, ``tokens`` times."""
    llm.reset()
    llm.eval(prompt)
    start = time.perf_counter()
    for _ in range(tokens):
        token = llm.sample(temp=0.0, repeat_penalty=1.0)
        llm.eval([token])  # an end of generation is decoded on: only the speed counts here
    return tokens / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    path = str(demo_model_path())
    default = default_threads()
    counts = sorted(set(range(1, (usable_cpus() or 1) + 1)) | {default})
    models = {n: quiet_llama(path, n_ctx=512, n_gpu_layers=0, n_threads=n) for n in counts}
    prompt = models[default].tokenize(PROMPT, add_bos=False, special=True)
    for llm in models.values():  # warm each once: page cache, thread pool
        decode_rate(llm, prompt, 4)
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for run in range(args.runs):
        order = counts[run % len(counts):] + counts[: run % len(counts)]
        for n in order:
            rates[n].append(decode_rate(models[n], prompt, args.tokens))
    for llm in models.values():
        llm.close()

    median = {n: statistics.median(r) for n, r in rates.items()}
    best = max(median, key=median.__getitem__)
    hw = detect()
    llama_cpp_own = max((os.cpu_count() or 1) // 2, 1)  # llama-cpp-python's default for n_threads
    print(f"demo model: {path}")
    print(f"machine: {hw.physical_cores} physical cores, {hw.logical_cores} logical, performance cores "
          f"{hw.performance_cores or '-'}, usable {hw.usable_cpus}; default threads {default}")
    # llama.cpp's threads spin while they wait for each other: other work on the cores slows the larger counts
    # most, so the load the run shared the machine with is part of the result.
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"runs: {args.runs} (rotating order), {args.tokens} decoded tokens each; load average {load}")
    print(f"{'threads':>7} {'decode tok/s':>13} {'min':>7} {'max':>7}")
    for n in counts:
        mark = " <- default" if n == default else ""
        mark += " <- best" if n == best else ""
        print(f"{n:7} {median[n]:13.1f} {min(rates[n]):7.1f} {max(rates[n]):7.1f}{mark}")
    print(f"default/best decode tokens/s: {median[default] / median[best]:.3f}  (goal >= 0.95)")
    if llama_cpp_own in median:
        print(f"llama-cpp-python's own default ({llama_cpp_own})/best: {median[llama_cpp_own] / median[best]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
