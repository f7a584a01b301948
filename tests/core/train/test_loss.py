"""The sliced cross-entropy (core.train.loss) gives torch's float32 cross-entropy and its gradient, for float32
and bf16 logits, over several slices."""

from __future__ import annotations

import pytest

from tuillm.core.train import loss


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_token_losses_match_torch_cross_entropy(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(loss, "SLICE_ELEMENTS", 1000)  # 7 rows of 130 a slice: 5 slices, the last one short
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(33, 130, generator=generator) * 4).to(getattr(torch, dtype))
    targets = torch.randint(0, 130, (33,), generator=generator)
    weights = torch.rand(33, generator=generator)  # a gradient that differs per token (DPO's sums per sequence)
    ours_in = logits.clone().requires_grad_()
    ours = loss.token_losses(ours_in, targets)
    (ours * weights).sum().backward()
    ref_in = logits.clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(ref_in.float(), targets, reduction="none")
    (ref * weights).sum().backward()
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
    assert ours_in.grad is not None and ref_in.grad is not None and ours_in.grad.dtype == logits.dtype
    tolerance = 1e-6 if dtype == "float32" else 1e-2  # both gradients are rounded to bf16 at the end
    assert torch.allclose(ours_in.grad.float(), ref_in.grad.float(), atol=tolerance)
    assert ours_in.grad.abs().max() > 0.1  # not vacuous: the gradient is there
