"""Forward and backward passes over packed micro-batches: the summed loss of the trained tokens, rows of a batch,
the eval sums, and the memory figure of the progress line. torch is imported inside each function."""

from __future__ import annotations

import math
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.train.attention import sequence_bounds
from tuillm.core.train.data import IGNORE, PackedBatch


def check_loss(loss: float, step: int) -> None:
    """A step whose loss is not a number stops the run before the optimizer spreads it into every LoRA weight (an
    adapter of NaNs would be saved, merged and chatted with); the checkpoints before it stay."""
    if not math.isfinite(loss):
        raise TuillmError(f"the loss is {loss} at step {step}: training diverged; lower --lr (or --alpha) and "
                          "train again")


def check_weights(model: Any, step: int) -> None:
    """The trained LoRA weights are all finite before the adapter is written: the last optimizer step (a huge --lr)
    can turn them to inf or NaN after a loss that still looked fine, and no later step's loss would catch it."""
    import torch

    bad = next((name for name, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())),
               None)
    if bad is not None:
        raise TuillmError(f"the adapter's weights are not finite after step {step} ({bad}): training diverged; lower "
                          "--lr (or --alpha) and train again")


def batch_tensors(batch: PackedBatch, device: str) -> tuple[Any, Any]:
    """The positions whose logits are needed and their targets (labels shifted by one)."""
    import torch

    labels = torch.tensor(batch.labels, dtype=torch.long)
    keep = torch.nonzero(labels[1:] != IGNORE).flatten()
    targets = labels[1:][keep]
    return keep.to(device), targets.to(device)


def row_logits(model: Any, batch: PackedBatch, keep: Any, device: str) -> Any:
    """The logits of a packed row at the positions ``keep``: only the positions that carry loss go through the LM
    head (no vocab-sized logits for the prompt tokens). The examples' bounds go with the positions, for attention
    example by example (core.train.attention; another attention ignores them)."""
    import torch

    ids = torch.tensor([batch.input_ids], dtype=torch.long, device=device)
    pos = torch.tensor([batch.position_ids], dtype=torch.long, device=device)
    return model(input_ids=ids, position_ids=pos, cu_seq_lens_q=sequence_bounds(batch.bounds),
                 logits_to_keep=keep, use_cache=False).logits[0]


def sum_loss(model: Any, batch: PackedBatch, device: str) -> Any:
    """Summed cross-entropy over the trained tokens of one packed batch."""
    from tuillm.core.train.loss import token_losses

    keep, targets = batch_tensors(batch, device)
    return token_losses(row_logits(model, batch, keep, device), targets).sum()


# The fewest tokens a row of ``packing="auto"`` may hold on CPU/MPS where attention runs example by example: the
# matrix products of a 330-token micro-batch in one row ran ~25% more tokens/s than in two rows (max_len 256).
ROW_TOKENS = 512


def row_limit(packing: str, max_len: int, device: str, per_example: bool) -> int | None:
    """The most tokens a row holds (None: the whole micro-batch; 0: one example). ``auto``: one row on CUDA, where
    the GPU needs the work; on CPU/MPS rows of ``max(max_len, ROW_TOKENS)`` where attention runs example by example
    (``per_example``, core.train.attention), else of ``max_len``, where a masked row's attention grows with the
    square of the row; both bound the activations of one pass."""
    if packing != "auto":
        return {"row": None, "each": 0}[packing]
    if device.startswith("cuda"):
        return None
    return max(max_len, ROW_TOKENS) if per_example else max_len


def split_packed(batch: PackedBatch, limit: int | None) -> list[PackedBatch]:
    """A packed micro-batch as rows of at most ``limit`` tokens (whole examples, greedily in order; None: one
    row; 0: one example per row). Labels keep the packing's first-token mask, so the gradient is the same."""
    if limit is None:
        return [batch]
    bounds = batch.bounds
    rows: list[PackedBatch] = []
    a = first = 0  # the row being made starts at token a, with example first
    for i in range(1, len(bounds)):
        end = bounds[i]
        if i + 1 == len(bounds) or bounds[i + 1] - a > limit:
            rows.append(PackedBatch(batch.input_ids[a:end], batch.labels[a:end], batch.position_ids[a:end],
                                    i - first))
            a, first = end, i
    return rows


def eval_sums(model: Any, batches: list[tuple[PackedBatch, bool]], device: str) -> tuple[float, int]:
    """The summed loss and trained-token count of the batches marked as counted; every batch is run (one a rank
    runs only to keep in step with the others counts nothing: core.train.distributed.eval_passes)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch, counted in batches:
            loss = float(sum_loss(model, batch, device))
            if counted:
                total, count = total + loss, count + batch.trained_tokens
    if was_training:
        model.train()
    return total, count


def memory_bytes(device: str) -> int:
    """The run's memory: allocated on a GPU, resident on CPU."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    if device == "mps":
        return int(torch.mps.current_allocated_memory())
    import psutil

    return int(psutil.Process().memory_info().rss)
