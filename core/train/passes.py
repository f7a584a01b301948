"""Forward and backward passes over packed micro-batches: the summed loss of the trained tokens, rows of a batch,
the eval loss, and the memory figure of the progress line. torch is imported inside each function."""

from __future__ import annotations

from typing import Any

from tuillm.core.train.data import IGNORE, Example, PackedBatch, pack


def batch_tensors(batch: PackedBatch, device: str) -> tuple[Any, Any, Any, Any]:
    """Inputs plus the positions whose logits are needed and their targets (labels shifted by one)."""
    import torch

    ids = torch.tensor([batch.input_ids], dtype=torch.long, device=device)
    pos = torch.tensor([batch.position_ids], dtype=torch.long, device=device)
    labels = torch.tensor(batch.labels, dtype=torch.long)
    keep = torch.nonzero(labels[1:] != IGNORE).flatten()
    targets = labels[1:][keep]
    return ids, pos, keep.to(device), targets.to(device)


def sum_loss(model: Any, batch: PackedBatch, device: str) -> Any:
    """Summed cross-entropy over the trained tokens of one packed batch."""
    import torch

    ids, pos, keep, targets = batch_tensors(batch, device)
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
    """The mean loss per trained token of ``examples`` (None without any)."""
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
                total += float(sum_loss(model, batch, device))
                count += batch.trained_tokens
    if was_training:
        model.train()
    return total / count if count else None


def memory_bytes(device: str) -> int:
    """The run's memory: allocated on a GPU, resident on CPU."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    if device == "mps":
        return int(torch.mps.current_allocated_memory())
    import psutil

    return int(psutil.Process().memory_info().rss)
