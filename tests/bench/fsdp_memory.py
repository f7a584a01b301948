"""Benchmark: each process's peak RSS in a two-process run on CPU, with ``--fsdp`` against plain DDP, in one run.

Both runs train the demo checkpoint (float32: the base is 0.54 GB) for a few steps with the same data and settings,
each rank a process of its own started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), so that each
prints its own peak (VmHWM). With ``--fsdp`` only rank 0 reads the base and sends the other its share
(core.train.distributed.send_base); under DDP every rank loads the whole base. The runs alternate, ``--runs`` times
each, and the medians are printed with the ratio FSDP/DDP per rank (below 1: FSDP holds less).

Run: .venv/bin/python tests/bench/fsdp_memory.py [--runs N] [--steps N] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.train_memory import PROBE  # noqa: E402 - after the repository is on the path

SETTING = {"max_len": 256, "batch_size": 2, "rank": 16, "nproc": 2}


def two_ranks(setting: dict, base: str, steps: int) -> list[int]:
    """One run of ``setting`` by two rank processes; each one's peak RSS in bytes (rank 0 first)."""
    from tuillm.core.train.dist_launch import free_port

    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               LOCAL_WORLD_SIZE="2", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // 2)))
    procs = [subprocess.Popen([sys.executable, "-c", PROBE, json.dumps(setting), base, str(steps)], cwd=REPO,
                              env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    peaks = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{json.dumps(setting)}: a rank failed\n{err[-3000:]}")
        peaks.append(json.loads(out.strip().splitlines()[-1])["peak"])
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    from tests.checkpoints import demo_hf_checkpoint

    base = str(demo_hf_checkpoint())
    peaks: dict[bool, list[list[int]]] = {False: [], True: []}
    for run in range(args.runs):
        for fsdp in (run % 2 == 0, run % 2 == 1):  # which goes first alternates
            peaks[fsdp].append(two_ranks({**SETTING, "dtype": args.dtype, "fsdp": fsdp}, base, args.steps))
    print(f"demo, {args.dtype}, {json.dumps(SETTING)}, {args.steps} steps; median of {args.runs} runs each")
    print(f"{'':6} {'DDP':>9} {'FSDP':>9} {'FSDP/DDP':>9}")
    for rank in (0, 1):
        ddp = statistics.median(p[rank] for p in peaks[False])
        fsdp = statistics.median(p[rank] for p in peaks[True])
        print(f"rank {rank} {ddp / 1e9:8.2f}G {fsdp / 1e9:8.2f}G {fsdp / ddp:9.2f}")
    ddp_sum = statistics.median(sum(p) for p in peaks[False])
    fsdp_sum = statistics.median(sum(p) for p in peaks[True])
    print(f"{'both':6} {ddp_sum / 1e9:8.2f}G {fsdp_sum / 1e9:8.2f}G {fsdp_sum / ddp_sum:9.2f}")


if __name__ == "__main__":
    main()
