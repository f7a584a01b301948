"""Attention per example over a packed row (core.train.attention): on tiny random checkpoints of every architecture
the tests build, the logits of three examples packed in one row equal those of each example run alone; where the
model's mask is more than block-diagonal (a sliding window shorter than an example, soft-capping) transformers'
own mask stays, and gives the same logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import TINY_ARCHS, tiny_random_checkpoint
from tuillm.core.train.attention import applies, sequence_bounds, use_example_attention, uses_example_attention
from tuillm.core.train.data import Example, PackedBatch, pack
from tuillm.core.train.passes import row_limit, row_logits

LENGTHS = (5, 300, 9, 3)  # short examples take SDPA's math kernel on a CPU, from 256 tokens the flash kernel


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_a_packed_row_gives_each_example_its_own_logits(arch: str, tmp_path: Path) -> None:
    import torch

    from tuillm.core.train.base import load_model

    model = load_model(tiny_random_checkpoint(arch, tmp_path / arch), "cpu", "float32").eval()
    # gemma2 soft-caps its logits and both gemmas have a 16-token window, shorter than an example can be: they
    # keep transformers' mask (which must give the same logits too).
    expected = arch not in ("gemma2", "gemma3")
    assert use_example_attention(model, 320) is expected and uses_example_attention(model) is expected
    generator = torch.Generator().manual_seed(0)
    examples = [torch.randint(3, 200, (n,), generator=generator).tolist() for n in LENGTHS]
    batch = pack([Example(ids, ids) for ids in examples])
    keep = torch.arange(len(batch.input_ids))
    with torch.no_grad():
        packed = row_logits(model, batch, keep, "cpu")
        alone = torch.cat([model(input_ids=torch.tensor([ids])).logits[0] for ids in examples])
        assert torch.allclose(packed, alone, atol=1e-5), (packed - alone).abs().max()
        if expected:  # the bounds are what keeps the examples apart: without them the row is one sequence
            ids = torch.tensor([batch.input_ids])
            joined = model(input_ids=ids, position_ids=torch.tensor([batch.position_ids])).logits[0]
            assert not torch.allclose(joined[LENGTHS[0]:], alone[LENGTHS[0]:], atol=1e-3)


def test_sequence_bounds_and_the_rows_of_auto_packing() -> None:
    assert PackedBatch([7] * 6, [7] * 6, [0, 1, 2, 0, 1, 0], 3).bounds == [0, 3, 5, 6]
    assert PackedBatch([7] * 4, [7] * 4, [0, 1, 2, 3], 1).bounds == [0, 4]
    assert sequence_bounds([0, 3, 5, 6]).tolist() == [0, 3, 5, 6]
    assert not applies("eager", None, None, 512) and not applies("sdpa", None, 50.0, 512)
    assert applies("sdpa", None, None, 512) and applies("sdpa", 4096, None, 512) and not applies("sdpa", 256, None, 512)
    assert row_limit("auto", 256, "cpu", per_example=True) == 512
    assert row_limit("auto", 1024, "cpu", per_example=True) == 1024
    assert row_limit("auto", 256, "cpu", per_example=False) == 256
    assert row_limit("auto", 256, "cuda", per_example=False) is None
    assert row_limit("row", 256, "cpu", per_example=True) is None and row_limit("each", 256, "cpu", True) == 0
