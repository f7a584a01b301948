"""Attention over packed rows, example by example.

A packed row holds several examples, and each may attend only to its own tokens. transformers says so with a
block-diagonal mask over the whole row, and SDPA with a mask computes every block of the row (quadratic in the row,
not in the example, and no causal skipping): on this project's 2-core CPU, in bf16, one layer's attention forward and
backward over 4 examples of 800 tokens in one row took 302 ms with the mask and 72 ms example by example (8 x 2,048
tokens: 2.2 s and 0.3 s). With attention per example a micro-batch runs as one row on any device, so the matrix
products see all its tokens at once.

It is an attention implementation registered with transformers (``AttentionInterface``): the model builds no mask
for it, and each example's slice goes through transformers' own SDPA forward, causal. The examples' bounds come in
the ``cu_seq_lens_q`` keyword (flash-attention's variable-length convention, which transformers' models pass down to
every attention call). Used only where the block-diagonal causal mask is the whole mask: no sliding window shorter
than an example can be, no logit soft-capping. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

NAME = "tuillm_per_example"
# Below this many tokens an example's attention runs on SDPA's math kernel on a CPU: forward and backward of 100
# tokens (9 heads, bf16) took 1.3 ms there against 2.3 ms in the flash kernel; from ~250 tokens flash is faster.
SHORT_ON_CPU = 256


def applies(implementation: str, window: int | None, softcap: float | None, max_len: int) -> bool:
    """Whether a model's mask is only block-diagonal and causal: SDPA attention, no sliding window shorter than
    ``max_len`` (the longest an example can be), no logit soft-capping."""
    return implementation == "sdpa" and (not window or window >= max_len) and softcap is None


def use_example_attention(model: Any, max_len: int) -> bool:
    """Switches ``model`` to attention per example where that computes what its mask would (``applies``);
    whether it did."""
    config = model.config
    if not applies(config._attn_implementation, getattr(config, "sliding_window", None),
                   getattr(config, "attn_logit_softcapping", None), max_len):
        return False
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, attention_per_example)
    model.set_attn_implementation(NAME)
    return True


def uses_example_attention(model: Any) -> bool:
    return model.config._attn_implementation == NAME


def sequence_bounds(bounds: list[int]) -> Any:
    """``cu_seq_lens_q`` of a packed row from its ``PackedBatch.bounds``. On the CPU whatever the run's device: every
    layer reads it back as numbers, which from a GPU would wait for the device."""
    import torch

    return torch.tensor(bounds, dtype=torch.int32)


def attention_per_example(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                          cu_seq_lens_q: Any = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' SDPA attention on each example's slice of the row (``cu_seq_lens_q``), causal; without bounds
    (one sequence) or with a cache (queries shorter than keys), transformers' SDPA as it is."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    bounds = cu_seq_lens_q.tolist()
    lengths = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    parts = []
    # split, not slices: its backward joins the examples' gradients once instead of one zero-filled row each.
    for n, q, k, v in zip(lengths, *(t.split(lengths, dim=2) for t in (query, key, value)), strict=True):
        # The CPU's flash kernel works in blocks of hundreds of tokens: a short example is faster as plain products.
        with sdpa_kernel(SDPBackend.MATH) if query.device.type == "cpu" and n < SHORT_ON_CPU else nullcontext():
            parts.append(sdpa_attention_forward(module, q, k, v, None, **kwargs)[0])
    return torch.cat(parts, dim=1), None
