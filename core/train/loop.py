"""LoRA training: one job that both front ends drive (``train(config, emit=..., cancel=...)``).

The loop is plain PyTorch over peft's LoRA model: examples are packed into one row per micro-batch (no padding),
the LM head runs only on the positions that carry loss (``logits_to_keep`` with indices), gradients accumulate
over micro-batches weighted by their share of the step's trained tokens, and the learning rate follows the chosen
schedule. Checkpoints (adapter, optimizer, RNG, loss log) are safetensors + JSON — nothing is ever unpickled —
so a resumed run replays exactly what an uninterrupted one would. A set ``cancel`` event finishes the current
step, saves a checkpoint and raises ``Cancelled``.

Events (for a front end): ``Log`` lines (data summary, truncation warnings, one line per ``log_every`` steps);
``Progress("dequantize"|"load"|"train", done, total, message)``; after every step ``Metric``s named ``loss``,
``lr``, ``tokens_per_s``, ``memory_bytes``, ``eta_s`` and, when evaluated, ``eval_loss`` (``step`` = the step).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Metric, Progress, ignore
from tuillm.core.train.data import (
    IGNORE,
    Encoded,
    Example,
    PackedBatch,
    encode_dataset,
    load_dataset,
    micro_batches,
    pack,
    split_eval,
)

SCHEDULES = ("cosine", "linear", "constant")
# The default LoRA targets: attention and MLP projections under the names the supported architectures use.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                   "gate_up_proj")
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
TRAINING_FILE = "training.json"
LOSS_LOG = "loss_log.jsonl"


@dataclass
class TrainConfig:
    base: str  # path of an HF folder or a GGUF (already resolved by the caller)
    data: list[str]
    output: str
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: list[str] | str = "default"  # "default", "all-linear", or module names
    max_len: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    schedule: str = "cosine"
    warmup: float = 0.03  # a fraction of the steps when < 1, else a number of steps
    weight_decay: float = 0.0
    epochs: float = 1.0
    max_steps: int | None = None
    eval_fraction: float = 0.0
    eval_every: int | None = None  # steps; None: at the end only
    save_every: int = 100  # steps; 0: only when cancelled
    grad_checkpointing: bool = False
    # "row": a micro-batch's examples packed in one row with a block-diagonal mask (one big forward; attention
    # costs the square of the packed length); "each": one forward/backward per example, gradients summed.
    # "auto": on CPU/MPS rows of up to max_len tokens, on CUDA one row. None pads; the gradient is the same.
    packing: str = "auto"
    assistant_only: bool = True
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    resume: bool = False
    log_every: int = 1

    def check(self) -> None:
        problems = []
        if self.rank < 1:
            problems.append("rank must be at least 1")
        if self.alpha <= 0:
            problems.append("alpha must be positive")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must be in [0, 1)")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("batch size and gradient accumulation must be at least 1")
        if self.lr <= 0:
            problems.append("learning rate must be positive")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.epochs <= 0 and not self.max_steps:
            problems.append("epochs must be positive (or give max steps)")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max steps must be at least 1")
        if not 0 <= self.eval_fraction < 1:
            problems.append("eval fraction must be in [0, 1)")
        if self.max_len < 2:
            problems.append("max length must be at least 2 tokens")
        if self.packing not in ("auto", "row", "each"):
            problems.append("packing must be auto, row or each")
        if problems:
            raise TuillmError("; ".join(problems))

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed into this run."""
        keys = ("rank", "alpha", "targets", "max_len", "batch_size", "grad_accum", "seed", "assistant_only",
                "eval_fraction")
        return {k: getattr(self, k) for k in keys}


@dataclass
class TrainResult:
    output: Path
    steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens: int
    seconds: float
    loss_log: list[dict[str, Any]] = field(default_factory=list)


def lr_at(step: int, total: int, base_lr: float, schedule: str, warmup_steps: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    span = max(1, total - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return base_lr * (1.0 - progress)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def format_duration(seconds: float) -> str:
    """``1m05s``: the ETA and run times of the progress lines (the front ends show the same)."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def parse_targets(text: str) -> list[str] | str:
    """LoRA targets as typed by a user: "default", "all-linear", or comma-separated module names."""
    text = text.strip() or "default"
    if text in ("default", "all-linear"):
        return text
    return [t.strip() for t in text.split(",") if t.strip()]


def _memory_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    if device == "mps":
        return int(torch.mps.current_allocated_memory())
    import psutil

    return int(psutil.Process().memory_info().rss)


def resolve_targets(model: Any, targets: list[str] | str) -> list[str] | str:
    """The module names LoRA wraps; an error naming what exists when none of the asked ones does."""
    import torch

    linear = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
    linear.discard("lm_head")
    if targets == "all-linear":
        return "all-linear"
    wanted = list(DEFAULT_TARGETS) if targets in ("default", None, []) else list(targets)
    found = [t for t in wanted if t in linear]
    if not found:
        raise TuillmError(f"no LoRA target module among {', '.join(wanted)}; this model's linear layers: "
                          f"{', '.join(sorted(linear))}")
    return found


# --- data -----------------------------------------------------------------------------------------------------


def prepare_data(config: TrainConfig, tokenizer: Any, emit: Emit = ignore) -> tuple[list[Example], list[Example]]:
    """All data files read, checked and encoded (errors before any training); then the eval split."""
    from tuillm.core.chat.template import ChatTemplate

    if not config.data:
        raise TuillmError("no training data given")
    source = getattr(tokenizer, "chat_template", None)
    template = None
    if isinstance(source, str) and source:
        template = ChatTemplate(source, bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "",
                                name="model")

    def tokenize(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    suffix = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    bos = tokenizer.bos_token_id
    # Raw text starts with BOS where the tokenizer itself would add one (Llama 3, Gemma); not for SmolLM/Qwen.
    prefix = [bos] if bos is not None and tokenizer("x")["input_ids"][:1] == [bos] else []
    examples: list[Example] = []
    for path in config.data:
        dataset = load_dataset(path)
        enc: Encoded = encode_dataset(dataset, tokenize, template, config.max_len,
                                      assistant_only=config.assistant_only, text_suffix=suffix,
                                      text_prefix=prefix)
        note = ""
        if enc.truncated:
            note += f"; {enc.truncated} longer than {config.max_len} tokens, cut"
        if enc.dropped:
            note += f"; {enc.dropped} dropped (nothing to learn left after the cut)"
        emit(Log(f"{dataset.path.name}: {len(dataset.records)} examples, {dataset.format} format{note}",
                 "warning" if enc.truncated or enc.dropped else "info"))
        examples.extend(enc.examples)
    return split_eval(examples, config.eval_fraction, config.seed)


def _batch_tensors(batch: PackedBatch, device: str) -> tuple[Any, Any, Any, Any]:
    """Inputs plus the positions whose logits are needed and their targets (labels shifted by one)."""
    import torch

    ids = torch.tensor([batch.input_ids], dtype=torch.long, device=device)
    pos = torch.tensor([batch.position_ids], dtype=torch.long, device=device)
    labels = torch.tensor(batch.labels, dtype=torch.long)
    keep = torch.nonzero(labels[1:] != IGNORE).flatten()
    targets = labels[1:][keep]
    return ids, pos, keep.to(device), targets.to(device)


def _sum_loss(model: Any, batch: PackedBatch, device: str) -> Any:
    """Summed cross-entropy over the trained tokens of one packed batch."""
    import torch

    ids, pos, keep, targets = _batch_tensors(batch, device)
    # Only the positions that carry loss go through the LM head: no vocab-sized logits for the prompt tokens.
    logits = model(input_ids=ids, position_ids=pos, logits_to_keep=keep, use_cache=False).logits[0]
    return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")


def split_packed(batch: PackedBatch, limit: int | None) -> list[PackedBatch]:
    """A packed micro-batch as rows of at most ``limit`` tokens (whole examples, greedily in order; None: one
    row; 0: one example per row). Labels keep the packing's first-token mask, so the gradient is the same."""
    if limit is None:
        return [batch]
    starts = [i for i, p in enumerate(batch.position_ids) if p == 0] + [len(batch.position_ids)]
    rows: list[PackedBatch] = []
    a = 0
    for i in range(1, len(starts)):
        end = starts[i]
        nxt = starts[i + 1] if i + 1 < len(starts) else None
        if nxt is None or nxt - a > limit:
            rows.append(PackedBatch(batch.input_ids[a:end], batch.labels[a:end], batch.position_ids[a:end],
                                    sum(1 for p in batch.position_ids[a:end] if p == 0)))
            a = end
    return rows


def evaluate(model: Any, examples: list[Example], batch_size: int, device: str) -> float | None:
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = pack(examples[start: start + batch_size])
            if batch.trained_tokens:
                total += float(_sum_loss(model, batch, device))
                count += batch.trained_tokens
    if was_training:
        model.train()
    return total / count if count else None


# --- checkpoints ----------------------------------------------------------------------------------------------


def _atomic_dir(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def save_checkpoint(folder: Path, model: Any, optimizer: Any, step: int, log: list[dict], config: TrainConfig,
                    extra: dict[str, Any]) -> Path:
    """``folder/checkpoints/step-N``: adapter weights, optimizer moments and RNG states as safetensors, the rest as
    JSON; written to a temporary name and renamed; only the latest ``KEEP_CHECKPOINTS`` are kept."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = folder / CHECKPOINTS
    final = root / f"step-{step:07d}"
    tmp = _atomic_dir(final)
    adapter = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(adapter, str(tmp / "adapter.safetensors"))
    state = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = float(value)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    meta = {"step": step, "param_groups": state["param_groups"], "scalars": scalars, "loss_log": log,
            "fingerprint": config.fingerprint(), **extra}
    (tmp / "state.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    done = [p for p in sorted((Path(folder) / CHECKPOINTS).glob("step-*")) if (p / "state.json").is_file()]
    return done[-1] if done else None


def load_checkpoint(path: Path, model: Any, optimizer: Any, config: TrainConfig) -> dict[str, Any]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    saved = meta.get("fingerprint", {})
    now = config.fingerprint()
    # JSON turns tuples into lists: compare through the same round trip.
    differing = [k for k in now if json.loads(json.dumps(now[k])) != saved.get(k)]
    if differing:
        raise TuillmError(f"{path}: the checkpoint was made with other settings ({', '.join(differing)}); "
                          "use the same ones to resume, or another output folder")
    set_peft_model_state_dict(model, load_file(str(path / "adapter.safetensors")))
    tensors = load_file(str(path / "optimizer.safetensors"))
    state: dict[Any, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        for name, value in values.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
    return meta


# --- the job --------------------------------------------------------------------------------------------------


def _write_outputs(out: Path, model: Any, config: TrainConfig, base_folder: Path, result: TrainResult) -> None:
    """Adapter (PEFT format), the training parameters and the loss log; adapter files appear only complete."""
    tmp = _atomic_dir(out / "adapter")
    model.save_pretrained(str(tmp))
    peft_config = json.loads((tmp / "adapter_config.json").read_text())
    peft_config["base_model_name_or_path"] = str(base_folder)
    (tmp / "adapter_config.json").write_text(json.dumps(peft_config, indent=2))
    params = {**asdict(config), "base_folder": str(base_folder), "steps": result.steps,
              "train_loss": result.train_loss, "eval_loss": result.eval_loss, "tokens": result.tokens,
              "seconds": round(result.seconds, 2)}
    (tmp / TRAINING_FILE).write_text(json.dumps(params, indent=2))
    (tmp / LOSS_LOG).write_text("".join(json.dumps(r) + "\n" for r in result.loss_log))
    # The config goes last: its presence marks a finished adapter for merge and export.
    for name in (TRAINING_FILE, LOSS_LOG, "adapter_model.safetensors", "README.md", "adapter_config.json"):
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)


def train(config: TrainConfig, *, emit: Emit = ignore, cancel: threading.Event | None = None) -> TrainResult:
    """Train a LoRA adapter into ``config.output``; see the module docstring."""
    config.check()
    out = Path(config.output).expanduser()
    if out.exists() and not out.is_dir():
        raise TuillmError(f"{out}: exists and is not a folder")
    if (out / "adapter_config.json").exists():
        raise TuillmError(f"{out}: already holds a trained adapter; choose another output folder")
    latest = latest_checkpoint(out)
    resume_from = latest if config.resume else None
    if not config.resume and latest is not None:
        raise TuillmError(f"{out}: holds checkpoints of an unfinished run; resume it (--resume, or Resume in the Train "
                          "pane), or choose another output folder")

    from tuillm.core.train.base import base_folder, load_model, load_tokenizer, pick_device, pick_dtype

    folder = base_folder(Path(config.base), emit=emit)
    tokenizer = load_tokenizer(folder)
    train_set, eval_set = prepare_data(config, tokenizer, emit)  # every data error before the model loads

    import torch
    from peft import LoraConfig, get_peft_model

    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    # Rows of at most max_len tokens on CPU/MPS: attention and activations stay small and the matrix products
    # still have a few hundred rows; on CUDA the whole micro-batch in one row keeps the GPU busy.
    row_limit = {"row": None, "each": 0}.get(config.packing,
                                             None if device.startswith("cuda") else config.max_len)
    torch.manual_seed(config.seed)
    emit(Progress("load", 0, 0, f"loading {folder.name} on {device} ({dtype})"))
    model = load_model(folder, device, dtype)
    targets = resolve_targets(model, config.targets)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    for p in model.parameters():  # LoRA weights in float32 even over a bf16 base: small, and stable to train
        if p.requires_grad:
            p.data = p.data.float()
    if config.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    target_names = targets if isinstance(targets, str) else ", ".join(targets)
    emit(Log(f"LoRA rank {config.rank}, alpha {config.alpha:g} on {target_names}: "
             f"{n_trainable / 1e6:.2f}M trainable of {n_total / 1e6:.0f}M parameters; {device}, {dtype}"))

    n_micro = math.ceil(len(train_set) / config.batch_size)
    steps_per_epoch = math.ceil(n_micro / config.grad_accum)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * n_micro / config.grad_accum))
    warmup_steps = int(config.warmup * total_steps) if config.warmup < 1 else int(config.warmup)
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)

    step = 0
    log: list[dict[str, Any]] = []
    tokens_done = 0
    if resume_from is not None:
        meta = load_checkpoint(resume_from, model, optimizer, config)
        step, log = int(meta["step"]), list(meta["loss_log"])
        tokens_done = int(meta.get("tokens", 0))
        emit(Log(f"resuming from {resume_from.name} (step {step} of {total_steps})"))
    elif config.resume:
        emit(Log(f"{out}: no checkpoint to resume from; starting at step 0", "warning"))
    out.mkdir(parents=True, exist_ok=True)
    emit(Log(f"{len(train_set)} training examples, {len(eval_set)} for eval; {total_steps} steps "
             f"({steps_per_epoch} per epoch) of {config.batch_size} x {config.grad_accum} examples"))

    epoch_cache: dict[int, list[PackedBatch]] = {}

    def micro(m: int) -> PackedBatch:
        epoch = m // n_micro
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = list(micro_batches(train_set, config.batch_size, config.seed, epoch))
        return epoch_cache[epoch][m % n_micro]

    def checkpoint() -> Path:
        return save_checkpoint(out, model, optimizer, step, log, config, {"tokens": tokens_done})

    if cancel is not None and cancel.is_set():  # cancelled while the model loaded: nothing trained to save
        raise Cancelled()
    model.train()
    start = time.monotonic()
    start_step = step
    run_tokens = 0
    last_eval: float | None = None
    last_loss: float | None = log[-1]["loss"] if log else None
    try:
        while step < total_steps:
            batches = [micro(step * config.grad_accum + i) for i in range(config.grad_accum)]
            step_tokens = sum(b.trained_tokens for b in batches)
            lr = lr_at(step, total_steps, config.lr, config.schedule, warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss = 0.0
            for packed in batches:
                for batch in split_packed(packed, row_limit):
                    if not batch.trained_tokens:
                        continue
                    # Weighted by its share of the step's trained tokens: a token-mean over the whole step.
                    loss = _sum_loss(model, batch, device) / step_tokens
                    loss.backward()
                    step_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen = sum(len(b.input_ids) for b in batches)
            tokens_done += seen
            run_tokens += seen
            elapsed = time.monotonic() - start
            tps = run_tokens / elapsed if elapsed > 0 else 0.0
            eta = elapsed / (step - start_step) * (total_steps - step)
            mem = _memory_bytes(device)
            last_loss = step_loss
            record: dict[str, Any] = {"step": step, "loss": round(step_loss, 6), "lr": lr, "tokens": tokens_done}
            evaluate_now = bool(eval_set) and (step == total_steps
                                               or bool(config.eval_every and step % config.eval_every == 0))
            if evaluate_now:
                last_eval = evaluate(model, eval_set, config.batch_size, device)
                record["eval_loss"] = round(last_eval, 6) if last_eval is not None else None
            log.append(record)
            for name, value in (("loss", step_loss), ("lr", lr), ("tokens_per_s", tps), ("memory_bytes", mem),
                                ("eta_s", eta)):
                emit(Metric(name, value, step))
            if evaluate_now and last_eval is not None:
                emit(Metric("eval_loss", last_eval, step))
            message = (f"loss {step_loss:.4f}" + (f" eval {last_eval:.4f}" if evaluate_now and last_eval else "")
                       + f", lr {lr:.2e}, {tps:.0f} tok/s, ETA {format_duration(eta)}, mem {mem / 1e9:.2f} GB")
            emit(Progress("train", step, total_steps, message))
            if config.log_every and (step % config.log_every == 0 or step == total_steps):
                emit(Log(f"step {step}/{total_steps}: {message}"))
            if config.save_every and step % config.save_every == 0 and step < total_steps:
                checkpoint()
            if cancel is not None and cancel.is_set() and step < total_steps:
                path = checkpoint()
                emit(Log(f"cancelled after step {step}; checkpoint {path} (--resume, or Resume in the Train pane, "
                         "continues it)", "warning"))
                raise Cancelled()
    except torch.OutOfMemoryError:
        raise TuillmError(f"out of memory on {device}; lower --batch-size or --max-len, or add "
                          "--grad-checkpointing") from None
    seconds = time.monotonic() - start
    result = TrainResult(out, step, last_loss, last_eval, tokens_done, seconds, log)
    _write_outputs(out, model, config, folder, result)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # the run is complete: nothing left to resume
    emit(Log(f"wrote the adapter to {out} (final loss {last_loss:.4f}"
             + (f", eval loss {last_eval:.4f}" if last_eval is not None else "") + ")"))
    return result
