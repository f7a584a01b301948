"""Data-parallel training (``--nproc``): how a step is dealt out to ranks, the refusals, and real runs of two
gloo processes on CPU (started by core.train.dist_launch) against one process on the same data and global batch.

Tolerance of the curves: float32, no dropout, the same initialisation; two processes differ from one only in the
order the gradient is summed (rows grouped by rank, then gloo's all-reduce) and in the row packing, so the losses
agree to rounding: 1e-4 relative is far above that (1e-6 seen) and far below what a wrong share, a missing
all-reduce or a doubled gradient would give (a whole example's loss, several per cent).
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint, tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Log, Progress
from tuillm.core.train.data import IGNORE, Example, pack
from tuillm.core.train.distributed import check_nproc, deal, eval_passes, share_rows
from tuillm.core.train.loop import TrainConfig, latest_checkpoint, train


def example(n: int, trained: int) -> Example:
    return Example(list(range(1, n + 1)), [IGNORE] * (n - trained) + list(range(trained)))


def test_deal_balances_tokens_and_is_the_same_on_every_rank() -> None:
    sizes = [50, 10, 40, 30, 20, 60]
    shares = deal(sizes, 2)
    assert shares == deal(sizes, 2)  # every rank computes every share alike
    assert sorted(i for s in shares for i in s) == list(range(6))
    held = [sum(sizes[i] for i in s) for s in shares]
    assert held == [110, 100]  # 60,40,10 | 50,30,20
    assert deal([5], 3) == [[0], [], []]


def test_the_ranks_rows_are_the_step_dealt_out() -> None:
    examples = [example(n, t) for n, t in ((8, 3), (12, 5), (6, 2), (10, 4), (9, 9))]
    batches = [pack(examples[:3]), pack(examples[3:])]
    rows = [share_rows(batches, None, r, 2) for r in range(2)]
    ids = sorted(tuple(row.input_ids) for r in rows for row in r)
    # one row a rank (no row limit); together they hold every token of the step once
    assert [len(r) for r in rows] == [1, 1]
    assert sorted(t for r in rows for row in r for t in row.input_ids) == sorted(
        t for e in examples for t in e.input_ids)
    assert sum(row.trained_tokens for r in rows for row in r) == sum(b.trained_tokens for b in batches)
    assert ids == sorted(tuple(row.input_ids) for r in rows for row in r)
    # row limit 0: one example a row, as in one process
    assert sum(len(share_rows(batches, 0, r, 2)) for r in range(2)) == 5
    # no row limit (CUDA): a rank's rows are never longer than the step's longest micro-batch (26 tokens here)
    alone = share_rows(batches, None, 0, 1)
    assert [len(row.input_ids) for row in alone] == [26, 19]
    # FSDP (even): every rank runs as many rows, the short one made up with a row that trains nothing
    uneven = [pack([example(20, 5), example(20, 5), example(30, 5)])]  # rank 0: 30 | rank 1: 20, 20 (limit 30)
    assert [len(share_rows(uneven, 30, r, 2)) for r in range(2)] == [1, 2]
    even = [share_rows(uneven, 30, r, 2, even=True) for r in range(2)]
    assert [len(rows) for rows in even] == [2, 2]
    assert [row.trained_tokens for row in even[0]] == [5, 0]


def test_a_rank_dealt_nothing_runs_a_row_without_loss() -> None:
    batches = [pack([example(8, 3)])]
    mine, spare = share_rows(batches, None, 0, 2), share_rows(batches, None, 1, 2)
    assert mine[0].trained_tokens == 3
    assert len(spare) == 1 and spare[0].trained_tokens == 0 and spare[0].input_ids == mine[0].input_ids


def test_the_eval_set_is_shared_out_in_as_many_passes_on_every_rank() -> None:
    passes = [eval_passes(5, r, 2) for r in range(2)]
    assert passes == [[(0, True), (2, True), (4, True)], [(1, True), (3, True), (0, False)]]
    assert sorted(i for p in passes for i, counted in p if counted) == list(range(5))
    assert eval_passes(1, 2, 3) == [(0, False)] and eval_passes(4, 0, 1) == [(i, True) for i in range(4)]


def cfg(tmp_path: Path, out: str, **kw: object) -> TrainConfig:
    data = write_fact_dataset(tmp_path / "fact.jsonl", 12)
    base = dict(base=str(demo_hf_checkpoint()), data=[str(data)], output=str(tmp_path / out), rank=4, alpha=8,
                dropout=0.0, max_len=48, batch_size=3, grad_accum=1, lr=2e-3, max_steps=4, save_every=2, seed=3,
                device="cpu", dtype="float32", log_every=1)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("device", "count", "expected"), [
    ("cuda", 1, "--nproc 2: this machine has 1 GPU; at most 1"),
    ("cuda", 0, "--nproc 2: this machine has 0 GPUs; at most 0"),
    ("cpu", 1, "--nproc 2: this machine has 1 CPU core; at most 1"),
])
def test_too_many_processes_are_counted_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str,
                                                  count: int, expected: str) -> None:
    monkeypatch.setattr("tuillm.core.train.distributed.device_count", lambda _device: count)
    with pytest.raises(TuillmError) as err:
        check_nproc(cfg(tmp_path, "o", nproc=2), device, 1)
    assert str(err.value) == expected


@pytest.mark.parametrize(("kw", "world", "expected"), [
    ({"nproc": 4096}, 1, "--nproc 4096: this machine has"),
    ({"nproc": 3}, 2, "--nproc 3, but the launcher started 2 processes"),
])
@pytest.mark.cores(2)
def test_refusals(tmp_path: Path, kw: dict, world: int, expected: str) -> None:
    with pytest.raises(TuillmError, match=expected.replace("(", r"\(")):
        check_nproc(cfg(tmp_path, "o", **kw), "cpu", world)
    with pytest.raises(TuillmError, match="--fsdp needs --nproc 2"):
        check_nproc(cfg(tmp_path, "o", fsdp=True), "cuda", 1)
    with pytest.raises(TuillmError, match=r"--fsdp shards the base across CUDA GPUs or CPU processes \(this run is on "
                                          "mps"):
        check_nproc(cfg(tmp_path, "o", nproc=2, fsdp=True), "mps", 1)
    check_nproc(cfg(tmp_path, "o", nproc=2), "cpu", 2)  # torchrun's 2 ranks with --nproc 2 (or 1): fine
    check_nproc(cfg(tmp_path, "o", nproc=2, fsdp=True), "cpu", 1)  # FSDP on the CPU: gloo
    with pytest.raises(TuillmError, match=r"--fsdp shards a base of full-precision weights: leave out --quant"):
        cfg(tmp_path, "o", nproc=2, fsdp=True, quant="4bit").check()


def steps_logged(events: list) -> list[str]:
    return [e.message.split(":")[0] for e in events if isinstance(e, Log) and e.message.startswith("step ")]


@pytest.mark.cores(2)
@pytest.mark.slow
def test_two_processes_follow_one_process(tmp_path: Path) -> None:
    """The demo checkpoint, 12 examples, 3 a step, 4 steps: two gloo processes give one process's curve."""
    one = train(cfg(tmp_path, "one"))
    events: list = []
    two = train(cfg(tmp_path, "two", nproc=2), emit=events.append)
    assert [r["loss"] for r in two.loss_log] == pytest.approx([r["loss"] for r in one.loss_log], rel=1e-4)
    assert [r["tokens"] for r in two.loss_log] == [r["tokens"] for r in one.loss_log]
    assert two.loss_log[-1]["loss"] < two.loss_log[0]["loss"]
    # one stream: rank 0's, each step once
    assert steps_logged(events) == ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]
    assert [e.done for e in events if isinstance(e, Progress) and e.stage == "train"] == [1, 2, 3, 4]
    assert any(isinstance(e, Log) and "starting 2 training processes" in e.message for e in events)
    out = tmp_path / "two"
    assert json.loads((out / "training.json").read_text())["nproc"] == 2
    assert not (out / "checkpoints").exists() and not list(out.glob(".*"))  # no temporaries left by any rank


def tiny_runs(tmp_path: Path, save_every: int, arch: str = "llama") -> dict[str, object]:
    """The settings of the tiny-model runs below (12 examples, 6 held out, 5 a micro-batch, eval every step)."""
    tiny = tiny_random_checkpoint(arch, tmp_path / "tiny")
    return {"base": str(tiny), "max_steps": 5, "save_every": save_every, "batch_size": 5, "eval_fraction": 0.5,
            "eval_every": 1}


def cancelled(config: TrainConfig, after: int) -> list:
    """``config`` trained two-process and cancelled once step ``after`` is reported; its events."""
    cancel = threading.Event()
    events: list = []

    def emit(event: object) -> None:
        events.append(event)
        if isinstance(event, Progress) and event.stage == "train" and event.done == after:
            cancel.set()

    with pytest.raises(Cancelled):
        train(config, emit=emit, cancel=cancel)
    return events


@pytest.mark.cores(2)
def test_a_cancel_stops_every_rank_and_either_count_resumes(tmp_path: Path) -> None:
    """A tiny random llama: a two-process run cancelled after step 1 stops all ranks after the same step with
    rank 0's checkpoint; resumed in one process it gives the uninterrupted curve (one process's: two give the
    same, above). 12 examples, 6 held out, 5 a micro-batch: every other step holds one example, so rank 1 runs its
    row without loss there; each rank evaluates one of the two eval batches."""
    small = tiny_runs(tmp_path, save_every=0)
    full = train(cfg(tmp_path, "full", **small))
    events = cancelled(cfg(tmp_path, "cut", nproc=2, **small), after=1)
    saved = latest_checkpoint(tmp_path / "cut")
    assert saved is not None and saved.name in ("step-0000001", "step-0000002")
    assert any(isinstance(e, Log) and e.message.startswith(f"cancelled after step {int(saved.name[5:])}")
               for e in events)
    resumed = train(cfg(tmp_path, "cut", resume=True, **small))
    for key in ("loss", "eval_loss"):  # the eval set shared out to the two processes: one process's eval loss
        assert [r[key] for r in resumed.loss_log] == pytest.approx([r[key] for r in full.loss_log], rel=1e-4)


@pytest.mark.cores(2)
def test_fsdp_shards_the_base_and_follows_one_process(tmp_path: Path) -> None:
    """``--fsdp`` on the CPU (gloo): the frozen base sharded across two processes by FSDP2, the LoRA weights whole on
    each; a checkpoint after step 2 (rank 0 alone reads the state, the run goes on), cancelled after step 3 and
    resumed with FSDP again: the curve, the eval losses and the adapter are one process's (float32: only the order
    of the sums differs). Rank 1 never reads the base: rank 0 sends it its shares (a model with tied embeddings, whose
    one weight is the LM head's too)."""
    from safetensors.torch import load_file

    small = tiny_runs(tmp_path, save_every=2, arch="qwen2")
    full = train(cfg(tmp_path, "full", **small))
    events = cancelled(cfg(tmp_path, "cut", nproc=2, fsdp=True, **small), after=3)
    saved = latest_checkpoint(tmp_path / "cut")  # the ranks see the cancel after step 3 or 4 (it is forwarded)
    assert saved is not None and saved.name in ("step-0000003", "step-0000004")
    shares = [int(m.group(1)) for e in events if isinstance(e, Log)
              and (m := re.match(r"FSDP: this process holds (\d+)% of the frozen base", e.message))]
    assert len(shares) == 1 and 40 <= shares[0] <= 60  # rank 0's half of the base
    resumed = train(cfg(tmp_path, "cut", nproc=2, fsdp=True, resume=True, **small))
    for key in ("loss", "eval_loss"):
        assert [r[key] for r in resumed.loss_log] == pytest.approx([r[key] for r in full.loss_log], rel=1e-4)
    one, two = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("full", "cut"))
    assert one.keys() == two.keys() and all(float((one[k] - two[k]).abs().max()) < 1e-5 for k in one)
    assert json.loads((tmp_path / "cut" / "training.json").read_text())["fsdp"] is True


def test_the_form_offers_processes_and_fsdp_with_more_than_one_core_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuillm.core.train.distributed as dist

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(dist, "device_count", lambda device: 1)
    assert dist.unoffered_options() == {"nproc", "fsdp"}
    monkeypatch.setattr(dist, "device_count", lambda device: 8)
    assert dist.unoffered_options() == set()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(dist, "device_count", lambda device: 1)
    assert dist.gpus_seen() == 2 and dist.unoffered_options() == set()


def test_the_ranks_share_out_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """OMP_NUM_THREADS came from os.cpu_count(): in a container given 2 CPUs of a 64-core host, each of 2 ranks
    started 32 threads on its one CPU."""
    from tuillm.core.train.dist_launch import ranks_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})  # as taskset -c N, or a cpuset of one CPU
        assert ranks_env(2)["OMP_NUM_THREADS"] == "1"
    finally:
        os.sched_setaffinity(0, allowed)
    env = ranks_env(2)
    assert env["OMP_NUM_THREADS"] == str(max(1, len(allowed) // 2)) and env["WORLD_SIZE"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    assert ranks_env(2)["OMP_NUM_THREADS"] == "3"
