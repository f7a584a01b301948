"""LoRA training: one job that both front ends drive (``train(config, emit=..., cancel=...)``).

The loop is plain PyTorch over peft's LoRA model: examples are packed into one row per micro-batch (no padding),
the LM head runs only on the positions that carry loss (``logits_to_keep`` with indices; core.train.passes),
gradients accumulate over micro-batches weighted by their share of the step's trained tokens, and the learning
rate follows the chosen schedule (core.train.schedule). Checkpoints (core.train.checkpoints) let a resumed run
replay exactly what an uninterrupted one would; a resume's data and steps left are checked first
(core.train.resume). A set ``cancel`` event finishes the current step, saves a checkpoint and raises ``Cancelled``
(during the set-up it stops between data records, or at the next stage, with nothing written); available RAM under
the memory guard's floor (core.models.guard), checked between steps, saves a checkpoint and raises a
``TuillmError`` saying so. With ``--nproc N`` each of N processes
runs this loop on its share of every step (``TrainRun.ranks``: core.train.distributed); rank 0 alone writes and emits.

Events (for a front end): ``Log`` lines (data summary, truncation warnings, one line per ``log_every`` steps);
``Progress("dequantize"|"load"|"train", done, total, message)``; after every step ``Metric``s named ``loss``,
``lr``, ``tokens_per_s`` (steady state: after the warm-up steps, core.train.schedule.Pace), ``setup_s`` (loading
before the first step), ``memory_bytes``, ``eta_s`` and, when evaluated, ``eval_loss`` (``step`` = the step);
a method's own metrics beside them (``step_metrics``: DPO's rewards, core.train.dpo, whose run is a ``TrainRun``).
"""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Metric, Progress, cancellable, ignore
from tuillm.core.models import guard, hardware
from tuillm.core.train.attention import uses_example_attention
from tuillm.core.train.checkpoints import (
    CHECKPOINTS,
    TrainResult,
    checkpoint_path,
    latest_checkpoint,
    output_folder,
    remove_if_empty,
    remove_stale_temporaries,
    save_checkpoint,
    write_outputs,
)
from tuillm.core.train.data import Example, PackedBatch, micro_batches, pack
from tuillm.core.train.distributed import (
    PeerLost,
    Ranks,
    Single,
    base_share,
    collective,
    eval_passes,
    join,
    should_launch,
)
from tuillm.core.train.model import check_quant, lora_model, resolve_targets
from tuillm.core.train.options import DEFAULT_TARGETS, SCHEDULES, TrainConfig, parse_targets
from tuillm.core.train.passes import (
    check_loss,
    check_weights,
    eval_sums,
    memory_bytes,
    row_limit,
    split_packed,
    sum_loss,
)
from tuillm.core.train.prepare import Read, prepare_data, read_data, take
from tuillm.core.train.resume import DATA_KEY, check_resume, check_steps_left, datasets_record, restore
from tuillm.core.train.schedule import Pace, Plan, format_duration, lr_at

# Kept importable from here: the front ends and tests name them as core.train.loop's.
__all__ = ["DEFAULT_TARGETS", "SCHEDULES", "TrainConfig", "TrainResult", "format_duration", "latest_checkpoint",
           "lr_at", "parse_targets", "prepare_data", "resolve_targets", "split_packed", "train"]


# --- the loop -------------------------------------------------------------------------------------------------


@dataclass
class TrainRun:
    """One run's loop and its state: step, loss log, token counts, the last losses."""

    config: TrainConfig
    model: Any
    optimizer: Any
    device: str
    plan: Plan
    train_set: list[Example]
    eval_set: list[Example]
    out: Path
    emit: Emit
    cancel: threading.Event | None
    memory: hardware.MemoryProbe
    step: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    tokens_done: int = 0
    run_tokens: int = 0
    last_eval: float | None = None
    last_loss: float | None = None
    start: float = 0.0
    start_step: int = 0
    step_metrics: dict[str, float] = field(default_factory=dict)  # a method's own, beside the loss (DPO's rewards)
    ranks: Ranks = field(default_factory=Single)  # the run's processes (core.train.distributed)
    pace: Pace = field(default_factory=Pace)  # set-up time and steady-state speed
    row_tokens: int | None = None  # the most tokens a row holds (passes.row_limit; None: the whole micro-batch)
    data: list[dict[str, Any]] = field(default_factory=list)  # the data files, recorded in every checkpoint
    _epoch: dict[int, list[PackedBatch]] = field(default_factory=dict)
    unit = "examples"  # what the data is counted in

    def micro(self, m: int) -> PackedBatch:
        """Micro-batch ``m`` of the run (epochs shuffled by seed and number, so a resumed run replays them)."""
        epoch = m // self.plan.micro_per_epoch
        if epoch not in self._epoch:
            self._epoch.clear()
            self._epoch[epoch] = list(micro_batches(self.train_set, self.config.batch_size, self.config.seed, epoch))
        return self._epoch[epoch][m % self.plan.micro_per_epoch]

    def checkpoint(self, together: bool = True) -> Path:
        """Rank 0 writes the checkpoint; the others wait for it (``together``), so all go on from the same step."""
        if self.ranks.main:
            save_checkpoint(self.out, self.ranks.unwrap(self.model), self.optimizer, self.step, self.log,
                            self.config, {"tokens": self.tokens_done, DATA_KEY: self.data})
        if together:
            self.ranks.barrier()
        return checkpoint_path(self.out, self.step)

    def one_step(self, lr: float) -> float:
        """One optimizer step over ``plan.accum`` micro-batches; the step's token-mean loss."""
        batches = [self.micro(self.step * self.plan.accum + i) for i in range(self.plan.accum)]
        step_tokens = sum(b.trained_tokens for b in batches)
        step_loss = 0.0
        rows = self.ranks.rows(batches, self.row_tokens)  # this process's share of the step
        for i, batch in enumerate(rows):
            with self.ranks.sync(self.model, last=i == len(rows) - 1):
                # Weighted by its share of the step's trained tokens: a token-mean over the whole step.
                loss = sum_loss(self.model, batch, self.device) / step_tokens
                self.ranks.backward(loss)
            step_loss += float(loss.detach())
        return self.apply_step(lr, sum(len(b.input_ids) for b in batches), self.ranks.total(step_loss))

    def apply_step(self, lr: float, seen: int, step_loss: float) -> float:
        """The optimizer step at ``lr`` over the accumulated gradients, and the step's counts (``seen``: tokens
        read)."""
        import torch

        check_loss(step_loss, self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_done += seen
        self.run_tokens += seen
        self.last_loss = step_loss
        return step_loss

    def report(self, lr: float, step_loss: float) -> None:
        """The step's eval (when due), loss-log record, metrics, progress and log line."""
        config, step, total = self.config, self.step, self.plan.total_steps
        elapsed = time.monotonic() - self.start
        tps = self.pace.tokens_per_s(step - self.start_step, self.run_tokens)
        eta = elapsed / (step - self.start_step) * (total - step)
        mem = memory_bytes(self.device)
        record: dict[str, Any] = {"step": step, "loss": round(step_loss, 6), "lr": lr, "tokens": self.tokens_done}
        evaluate_now = bool(self.eval_set) and (step == total
                                                or bool(config.eval_every and step % config.eval_every == 0))
        if evaluate_now:
            self.last_eval = self.eval_loss()
            record["eval_loss"] = round(self.last_eval, 6) if self.last_eval is not None else None
        record.update({name: round(value, 6) for name, value in self.step_metrics.items()})
        self.log.append(record)
        for name, value in (("loss", step_loss), ("lr", lr), ("tokens_per_s", tps), ("memory_bytes", mem),
                            ("eta_s", eta), ("setup_s", self.pace.setup_s),
                            *self.step_metrics.items()):
            self.emit(Metric(name, value, step))
        if evaluate_now and self.last_eval is not None:
            self.emit(Metric("eval_loss", self.last_eval, step))
        shown_eval = f" eval {self.last_eval:.4f}" if evaluate_now and self.last_eval else ""
        shown_extra = "".join(f", {name.replace('_', ' ')} {value:.3f}" for name, value in self.step_metrics.items())
        message = (f"loss {step_loss:.4f}{shown_eval}{shown_extra}, lr {lr:.2e}, {tps:.0f} tok/s"
                   f"{'' if self.pace.steady else ' (warm-up)'}, set-up {format_duration(self.pace.setup_s)}, "
                   f"ETA {format_duration(eta)}, mem {mem / 1e9:.2f} GB")
        self.emit(Progress("train", step, total, message))
        if config.log_every and (step % config.log_every == 0 or step == total):
            self.emit(Log(f"step {step}/{total}: {message}"))

    def eval_loss(self) -> float | None:
        """The held-out examples' mean loss per trained token, in batches of ``batch_size`` shared out to the
        ranks."""
        if not self.eval_set:
            return None
        size = self.config.batch_size
        batches = [pack(self.eval_set[i:i + size]) for i in range(0, len(self.eval_set), size)]
        mine = [(batches[i], counted) for i, counted in eval_passes(len(batches), self.ranks.rank, self.ranks.world)]
        total, count = eval_sums(self.ranks.unwrap(self.model), mine, self.device)
        count = int(self.ranks.total(count))
        return self.ranks.total(total) / count if count else None

    def after_step(self) -> None:
        """A checkpoint when one is due; when cancelled, a checkpoint and ``Cancelled``; under the memory guard's
        floor, a checkpoint and a ``TuillmError``."""
        config, step, total = self.config, self.step, self.plan.total_steps
        saved = None
        if config.save_every and step % config.save_every == 0 and step < total:
            saved = self.checkpoint()
        if self.ranks.any(self.cancel is not None and self.cancel.is_set()) and step < total:
            path = saved or self.checkpoint()
            self.emit(Log(f"cancelled after step {step}; checkpoint {path} (--resume, or Resume in the Train pane, "
                          "continues it)", "warning"))
            raise Cancelled()
        if step < total:
            self.check_memory(saved)

    def check_memory(self, saved: Path | None = None) -> None:
        """The memory guard between steps: under its floor (another program grew, or this run's memory did) the run
        saves a checkpoint and stops with one line, before the OOM killer ends it with nothing saved."""
        memory = guard.sample(self.memory)
        if not self.ranks.any(memory is not None and guard.level(memory) == "critical"):
            return
        path = saved or self.checkpoint()
        short = guard.describe(memory) if memory is not None else "another process of the run is short of memory"
        raise TuillmError(f"{short}: stopped after step {self.step} with a checkpoint in {path} "
                          "(free some memory, then --resume, or Resume in the Train pane, continues it)")

    def run(self) -> None:
        import torch

        self.model.train()
        self.start = self.pace.started()
        self.start_step = self.step
        self.last_loss = self.log[-1]["loss"] if self.log else None
        try:
            while self.step < self.plan.total_steps:
                lr = lr_at(self.step, self.plan.total_steps, self.config.lr, self.config.schedule,
                           self.plan.warmup_steps)
                # A peer lost in any of the step's collectives (FSDP's, in every forward, too): PeerLost.
                with collective() if self.ranks.world > 1 else nullcontext():
                    self.report(lr, self.one_step(lr))
                    self.after_step()
        except torch.OutOfMemoryError:
            raise TuillmError(f"out of memory on {self.device}; lower --batch-size or --max-len, or add "
                              "--grad-checkpointing") from None
        except PeerLost as exc:  # the last finished step is whole on rank 0: saved, the run resumes from it
            kept = f"; checkpoint {self.checkpoint(together=False)}" if self.step > self.start_step else ""
            raise PeerLost(f"{exc} after step {self.step}{kept} (--resume continues it)") from None


def _run_type(config: TrainConfig) -> type[TrainRun]:
    """The loop of ``config.method``: supervised, or DPO over pairs (core.train.dpo; prepare_data encodes either)."""
    if config.method == "dpo":
        from tuillm.core.train.dpo import DpoRun

        return DpoRun
    return TrainRun


def _train_into(run: TrainRun, model: Any, folder: Path, resume_from: Path | None) -> TrainResult:
    """The run in its output folder (rank 0 makes it), the adapter written at the end. A folder the run made is
    removed again when it fails with nothing saved in it (a first step that diverged, a stop while loading)."""
    config, out, ranks, cancel = run.config, run.out, run.ranks, run.cancel
    made = ranks.main and not out.exists()
    try:
        if ranks.main:  # rank 0 alone writes in the output folder
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out)
            if resume_from is None:  # --force over another run: its checkpoints would pass for this run's
                shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        run.emit(Log(f"{len(run.train_set)} training {run.unit}, {len(run.eval_set)} for eval; "
                     f"{run.plan.summary(config, run.unit)}"))
        if ranks.any(cancel is not None and cancel.is_set()):  # cancelled while the model loaded: nothing to save
            raise Cancelled()
        run.run()
        result = TrainResult(out, run.step, run.last_loss, run.last_eval, run.tokens_done,
                             time.monotonic() - run.start, run.log)
        if ranks.main:
            check_weights(model, run.step)
            write_outputs(out, model, config, folder, result)
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # the run is complete: nothing left to resume
    except BaseException:
        if made:
            remove_if_empty(out)
        raise
    return result


def train(config: TrainConfig, *, emit: Emit = ignore, cancel: threading.Event | None = None,
          force: bool = False, memory: hardware.MemoryProbe | None = None,
          datasets: list[Read] | None = None) -> TrainResult:
    """Train a LoRA adapter into ``config.output``; see the module docstring. ``force``: a finished adapter or
    another run's checkpoints in the output folder are replaced. ``memory``: the memory guard's probe (default:
    the system's RAM, read when the run starts so a test can replace ``hardware.read_memory``). ``datasets``: the
    data as core.train.pairs.check_data read it for the front end, taken over (the list is emptied): the files are
    not read again."""
    pace = Pace()  # set-up time counts from here
    handed = take(datasets)
    config.check()
    check_quant(config.quant, config.device)  # QLoRA without CUDA: refused before a GGUF base is dequantized
    out, resume_from = output_folder(config, force)
    if should_launch(config):  # --nproc N: N processes of this function, rank 0's events come back to emit
        from tuillm.core.train.dist_launch import launch

        handed.clear()  # each process reads the data itself
        return launch(config, emit=emit, cancel=cancel, force=force)

    from tuillm.core.train.base import base_folder, load_tokenizer, pick_device, pick_dtype

    ranks = join(config, pick_device(config.device))  # Single, or this rank of a data-parallel run
    emit = emit if ranks.main else ignore  # the front end sees one stream: rank 0's
    # The set-up stops at a cancel: between records as the data is read and encoded, at each stage's event (a quit
    # while a large dataset was encoded waited for all of it). The ranks of a run agree at its first step instead.
    setup_cancel = cancel if ranks.world == 1 else None
    setup = cancellable(emit, setup_cancel)
    read = read_data(config, setup_cancel, handed)  # each file read once: checked, its bytes hashed, kept
    data = datasets_record(read)
    if resume_from is not None:
        check_resume(resume_from, config, data)  # a step left to train, the same data: before anything loads
    with ranks.first():  # rank 0 dequantizes a GGUF base once; the others then find it cached
        folder = base_folder(Path(config.base), emit=setup)
    run_type = _run_type(config)
    # Encoded before the model loads; ``read`` is emptied as it is, each file's records freed once encoded.
    train_set, eval_set = prepare_data(config, load_tokenizer(folder), setup, setup_cancel, read)
    plan = Plan.of(config, len(train_set))
    if resume_from is not None:
        check_steps_left(resume_from, config, plan.total_steps)

    import torch

    device = ranks.place(pick_device(config.device))
    model = lora_model(config, folder, device, pick_dtype(device, config.dtype), setup, weights=ranks.loads_base)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    run = run_type(config, model, optimizer, device, plan, train_set, eval_set, out, emit, cancel,
                   memory or hardware.read_memory, ranks=ranks, pace=pace, data=data,
                   row_tokens=row_limit(config.packing, config.max_len, device, uses_example_attention(model)))
    restore(run, resume_from)
    ranks.seed(config.seed, run.step)
    run.model = ranks.wrap(model)  # DDP (or FSDP) around the LoRA model; after every rank checked the output
    if config.fsdp:
        emit(Log(f"FSDP: {base_share(model)}"))
    result = _train_into(run, model, folder, resume_from)
    ranks.finish()
    emit(Log(f"wrote the adapter to {out} (final loss {run.last_loss:.4f}"
             + (f", eval loss {run.last_eval:.4f}" if run.last_eval is not None else "") + ")"))
    return result
