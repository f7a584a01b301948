"""Cross-entropy of each trained token over the LM head's logits, computed a slice of rows at a time.

``torch.nn.functional.cross_entropy`` over logits upcast to float32 holds about ten vocabulary-sized float32 copies
per token at its peak (the upcast, log-softmax saved for backward, the zero-filled gradient of the loss, the
log-softmax gradient, its downcast): with the demo's 49,152-token vocabulary that is ~2 MB a trained token, 1 GB for
a 512-token row, more than the layers' activations. Here only the logits (in their own dtype, bf16 under autocast)
and one log-sum-exp per token are kept; forward and backward work in float32 on slices of ~16 MB, so the values are
those of the float32 upcast.

torch is imported inside the functions (the autograd function is built on first use).
"""

from __future__ import annotations

from functools import cache
from typing import Any

# Float32 elements of one slice: rows of the logits are taken this many elements at a time (16 MB).
SLICE_ELEMENTS = 1 << 22


def token_losses(logits: Any, targets: Any) -> Any:
    """The cross-entropy of each row of ``logits`` (n x vocabulary) against its target (n), in float32."""
    return _token_losses().apply(logits, targets)


def _slices(rows: int, width: int) -> list[slice]:
    step = max(1, SLICE_ELEMENTS // max(width, 1))
    return [slice(a, min(a + step, rows)) for a in range(0, rows, step)]


@cache
def _token_losses() -> Any:
    import torch

    class TokenLosses(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
            for part in _slices(*logits.shape):
                lse[part] = torch.logsumexp(logits[part].float(), dim=-1)
            ctx.save_for_backward(logits, targets, lse)
            return lse - logits.gather(1, targets[:, None])[:, 0].float()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            logits, targets, lse = ctx.saved_tensors
            out = torch.empty_like(logits)
            for part in _slices(*logits.shape):
                # d loss / d logits = softmax - one-hot, times the loss's gradient, for each row.
                z = logits[part].float().sub_(lse[part, None]).exp_()
                rows = torch.arange(z.shape[0], device=z.device)
                z[rows, targets[part]] -= 1
                out[part] = z.mul_(grad[part, None])
            return out, None

    return TokenLosses
