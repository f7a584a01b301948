"""What the benchmark scripts share: each measured run is a fresh Python process that prints one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Prepended to a child's code: its own peak RSS (ru_maxrss can include the parent's at fork).
PEAK_RSS = """
def peak_rss_mb():  # this process's own high-water mark
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024

def peak_gpu_mb(device):  # torch's high-water mark of allocated GPU memory; 0 off the GPU
    if device != "cuda":
        return 0.0
    import torch
    return torch.cuda.max_memory_allocated() / 2**20
"""


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter (in the repository root) with ``args``; its last stdout line, as JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])
