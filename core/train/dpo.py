"""Preference tuning (``--method dpo``): the training loop of core.train.loop with the DPO objective.

The run is the supervised one — LoRA on the base, the same schedule, progress events, checkpoints, cancel and
resume, memory guard, adapter output, ``--nproc`` and ``--fsdp`` (each step's pairs dealt out to the processes) —
with pairs (core.train.pairs) for examples and DPO's loss for the token loss. The reference model is the base
itself: the same model with the adapter switched off (peft's ``disable_adapter``), so no second copy is loaded; its
log-probabilities are computed, without gradients, for each micro-batch as it is trained (trl's default,
``precompute_ref_logps=False``).

The loss is trl's ``DPOTrainer`` sigmoid loss (``loss_type="sigmoid"``, reverse KL), written out because trl 1.16
computes it inside the trainer's ``_compute_loss`` with nothing callable on its own:
``-logsigmoid(beta * ((logp(chosen) - ref_logp(chosen)) - (logp(rejected) - ref_logp(rejected))))``, a side's
log-probability being the sum over its answer's tokens. Its rewards are trl's too: ``beta * (logp - ref_logp)``;
each step reports their mean margin (chosen minus rejected) and accuracy (the share of pairs whose chosen answer
has the higher reward) as the metrics ``reward_margin`` and ``reward_accuracy`` (``eval_reward_margin`` and
``eval_reward_accuracy`` on held-out pairs, whose ``eval_loss`` is their DPO loss). torch is imported inside the
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuillm.core.train.data import PackedBatch, epoch_order, pack
from tuillm.core.train.distributed import eval_passes
from tuillm.core.train.loop import TrainRun
from tuillm.core.train.pairs import Pair
from tuillm.core.train.passes import batch_tensors, row_logits


def sequence_logps(model: Any, batch: PackedBatch, device: str) -> Any:
    """The summed log-probability of each packed sequence's labelled tokens (a tensor of ``n_examples``)."""
    import torch

    from tuillm.core.train.loss import token_losses

    keep, targets = batch_tensors(batch, device)
    logits = row_logits(model, batch, keep, device)
    token_logps = -token_losses(logits, targets)
    bounds = batch.bounds
    lengths = torch.tensor([b - a for a, b in zip(bounds, bounds[1:], strict=False)])
    # The sequence each predicted token is in (a prediction is made from the token before it).
    owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)[1:][keep.cpu()].to(device)
    return torch.zeros(batch.n_examples, device=device).index_add(0, owner, token_logps)


def dpo_loss(policy: Any, reference: Any, beta: float) -> tuple[Any, Any, Any]:
    """trl's sigmoid DPO loss of each pair, and its chosen and rejected rewards; ``policy`` and ``reference``
    hold the (chosen, rejected) log-probabilities of each pair as rows."""
    import torch

    logratios = policy - reference
    chosen_rewards, rejected_rewards = beta * logratios[:, 0].detach(), beta * logratios[:, 1].detach()
    losses = -torch.nn.functional.logsigmoid(beta * (logratios[:, 0] - logratios[:, 1]))
    return losses, chosen_rewards, rejected_rewards


def pair_logps(model: Any, pairs: Sequence[Pair], device: str, *, reference: bool = False) -> Any:
    """The (chosen, rejected) log-probabilities of ``pairs`` in one packed row; ``reference``: the base's, the
    adapter switched off, without gradients."""
    import torch

    batch = pack([side for pair in pairs for side in (pair.chosen, pair.rejected)])
    if not reference:
        return sequence_logps(model, batch, device).view(-1, 2)
    with torch.no_grad(), model.disable_adapter():
        return sequence_logps(model, batch, device).view(-1, 2)


class DpoRun(TrainRun):
    """The training loop over preference pairs: the supervised run's steps, checkpoints and reports, with the DPO
    loss and its reward metrics."""

    unit = "preference pairs"

    def micro(self, m: int) -> list[Pair]:  # type: ignore[override]
        """Micro-batch ``m``'s pairs (epochs shuffled by seed and number, so a resumed run replays them)."""
        epoch, i = divmod(m, self.plan.micro_per_epoch)
        order = epoch_order(len(self.train_set), self.config.seed, epoch)
        size = self.config.batch_size
        return [self.train_set[j] for j in order[i * size: (i + 1) * size]]  # type: ignore[misc]

    def rows(self, micro: list[list[Pair]]) -> list[tuple[list[Pair], float]]:
        """This process's rows of a step, each with the weight of its loss: the step's pairs dealt out by tokens
        (core.train.distributed), one row per ``batch_size`` pairs where rows are not limited
        (core.train.passes.row_limit), else one pair a row (a pair's two sides attend apart either way: positions
        restart). A process dealt nothing (fewer pairs than processes) runs the first pair with weight 0: its
        backward still joins the step's all-reduce; under FSDP every process makes up that way the rows it runs
        fewer than the others (each forward gathers the weights with all of them)."""
        pairs = [pair for pairs in micro for pair in pairs]
        size = 1 if self.row_tokens is not None else self.config.batch_size
        shares = self.ranks.shares([pair.tokens for pair in pairs])
        mine = shares[self.ranks.rank]
        rows = [([pairs[i] for i in mine[k:k + size]], 1.0) for k in range(0, len(mine), size)]
        runs = max(-(-len(share) // size) for share in shares) if self.ranks.lockstep else 1
        return rows + [(pairs[:1], 0.0)] * (runs - len(rows))

    def one_step(self, lr: float) -> float:
        """One optimizer step over ``plan.accum`` micro-batches of pairs; the mean DPO loss of the step's pairs."""
        micro = [self.micro(self.step * self.plan.accum + i) for i in range(self.plan.accum)]
        n_pairs = sum(len(pairs) for pairs in micro)
        step_loss, margins, wins = 0.0, 0.0, 0.0
        base = self.ranks.unwrap(self.model)  # the reference pass, without gradients: no DDP hooks needed
        rows = self.rows(micro)
        for i, (row, weight) in enumerate(rows):
            with self.ranks.sync(self.model, last=i == len(rows) - 1):
                reference = pair_logps(base, row, self.device, reference=True)
                losses, chosen, rejected = dpo_loss(pair_logps(self.model, row, self.device), reference,
                                                    self.config.beta)
                loss = weight * losses.sum() / n_pairs  # a mean over the step's pairs, accumulated row by row
                self.ranks.backward(loss)
            step_loss += float(loss.detach())
            margins += weight * float((chosen - rejected).sum())
            wins += weight * float((chosen > rejected).float().sum())
        self.step_metrics = {"reward_margin": self.ranks.total(margins) / n_pairs,
                             "reward_accuracy": self.ranks.total(wins) / n_pairs}
        return self.apply_step(lr, sum(pair.tokens for pairs in micro for pair in pairs),
                               self.ranks.total(step_loss))

    def eval_loss(self) -> float | None:
        """The held-out pairs' mean DPO loss, shared out to the ranks a pair a pass; their reward margin and accuracy
        join the step's metrics."""
        import torch

        pairs: list[Pair] = self.eval_set  # type: ignore[assignment]
        if not pairs:
            return None
        model = self.ranks.unwrap(self.model)
        was_training = model.training
        model.eval()
        sums = [0.0, 0.0, 0.0]  # loss, margin, wins
        with torch.no_grad():
            for i, counted in eval_passes(len(pairs), self.ranks.rank, self.ranks.world):
                losses, chosen, rejected = dpo_loss(pair_logps(model, [pairs[i]], self.device),
                                                    pair_logps(model, [pairs[i]], self.device, reference=True),
                                                    self.config.beta)
                if counted:
                    for k, value in enumerate((losses, chosen - rejected, (chosen > rejected).float())):
                        sums[k] += float(value.sum())
        if was_training:
            model.train()
        total, margins, wins = (self.ranks.total(value) / len(pairs) for value in sums)
        self.step_metrics.update(eval_reward_margin=margins, eval_reward_accuracy=wins)
        return total
