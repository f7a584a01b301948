from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tuillm.core.models.memory import (
    FITS,
    TIGHT,
    TOO_BIG,
    classify,
    compute_bytes,
    embedding_compute_bytes,
    estimate,
    gpu_layers_for,
    kv_bytes,
    max_context,
    quant_fits,
)
from tuillm.core.models.metadata import ModelInfo, read_info

MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture(scope="module")
def demo(demo_gguf: Path) -> ModelInfo:
    return read_info(demo_gguf)


def test_kv_cache_matches_llama_cpp(demo: ModelInfo) -> None:
    # llama.cpp reports "KV buffer size = 45.00 MiB" for the demo at n_ctx 2048 (f16): 30 layers x 3 KV heads x
    # (64 + 64) dims x 2 bytes x 2048 cells.
    assert kv_bytes(demo, 2048) == 45 * MIB
    assert kv_bytes(demo, 2000) == 45 * MIB  # llama.cpp pads the context to 256 cells
    assert kv_bytes(demo, 2048, "q8_0") == pytest.approx(45 * MIB * 34 / 64)


def test_compute_buffer_close_to_llama_cpp(demo: ModelInfo) -> None:
    # llama.cpp's reported (reserved) CPU compute buffers for the demo: 98.25 MiB at 512, 166.38 MiB at 8192.
    assert compute_bytes(demo, 512, reserved=True) == pytest.approx(98.25 * MIB, rel=0.05)
    assert compute_bytes(demo, 8192, reserved=True) == pytest.approx(166.38 * MIB, rel=0.05)
    # What a CPU run touches: the attention peak and the f16 copy of the scores (measured by
    # tests/bench/memory_estimate.py: about 239 MiB at 8192).
    assert compute_bytes(demo, 8192) == pytest.approx(239 * MIB, rel=0.05)
    assert compute_bytes(demo, 8192, flash_attn=True) < compute_bytes(demo, 2048)


def test_an_embedding_context_counts_every_tokens_logits(demo: ModelInfo) -> None:
    # RSS growth measured embedding a near-full input with the demo: 818 MiB at 2,048 (no flash attention),
    # 1,536 MiB at 4,096 with flash attention. The chat's micro-batch of 512 with one token's logits counted ~80.
    assert embedding_compute_bytes(demo, 2048) == pytest.approx(818 * MIB, rel=0.1)
    assert embedding_compute_bytes(demo, 4096, flash_attn=True) == pytest.approx(1536 * MIB, rel=0.1)
    assert compute_bytes(demo, 2048) < embedding_compute_bytes(demo, 2048) / 5
    chat = estimate(demo, 4096, available=GIB)
    embedding = estimate(demo, 4096, available=GIB, embedding=True)
    assert chat.fit == FITS and embedding.fit == TOO_BIG
    assert embedding.total_bytes == embedding.weights_bytes + embedding.kv_bytes + embedding_compute_bytes(demo, 4096)


def test_estimate_adds_up_and_grows_with_context(demo: ModelInfo) -> None:
    small = estimate(demo, 1024, available=8 * GIB)
    large = estimate(demo, 8192, available=8 * GIB)
    assert small.total_bytes == small.weights_bytes + small.kv_bytes + small.compute_bytes
    assert small.weights_bytes == demo.size_bytes
    assert large.total_bytes > small.total_bytes
    assert estimate(demo, available=8 * GIB).n_ctx == 4096


def test_classify() -> None:
    assert classify(80, 100) == FITS
    assert classify(95, 100) == TIGHT
    assert classify(101, 100) == TOO_BIG


def test_max_context(demo: ModelInfo) -> None:
    assert max_context(demo, available=8 * GIB) == demo.context_length
    budget = estimate(demo, 2048, available=1).total_bytes / 0.85
    ctx = max_context(demo, available=int(budget) + 1)
    assert ctx == 2048
    assert estimate(demo, ctx + 256, available=int(budget) + 1).fit != FITS
    assert max_context(demo, available=10 * MIB) == 0
    # A model whose context is no multiple of 256: its own (128 fitted nowhere, so `info` said "fits at ctx 128"
    # and "does not fit at any context" together)
    assert max_context(replace(demo, context_length=128), available=8 * GIB) == 128
    assert max_context(replace(demo, context_length=1000), available=8 * GIB) == 1000
    assert max_context(replace(demo, context_length=128), available=10 * MIB) == 0


def test_gpu_offload_split(demo: ModelInfo) -> None:
    cpu = estimate(demo, 2048, available=8 * GIB)
    half = estimate(demo, 2048, n_gpu_layers=15, available=8 * GIB, vram=8 * GIB)
    full = estimate(demo, 2048, n_gpu_layers=31, available=8 * GIB, vram=8 * GIB)
    assert cpu.vram_bytes == 0
    assert 0 < half.vram_bytes < full.vram_bytes < full.total_bytes
    assert full.ram_bytes < half.ram_bytes < cpu.ram_bytes
    assert full.ram_bytes == full.total_bytes - full.vram_bytes
    assert gpu_layers_for(demo, vram=8 * GIB, n_ctx=2048) == demo.n_layers + 1
    some = gpu_layers_for(demo, vram=int(half.vram_bytes / 0.85) + 1, n_ctx=2048)
    assert 10 <= some <= 16
    assert gpu_layers_for(demo, vram=1 * MIB, n_ctx=2048) == 0


def test_quants_for_an_hf_checkpoint(demo: ModelInfo) -> None:
    hf = replace(demo, format="hf", file_type="BF16", size_bytes=demo.params * 2)
    fits = quant_fits(hf, 2048, available=400 * MIB)
    names = [q for q, _ in fits]
    assert names[0] == "f32" and names[-1] == "iq1_m"  # largest first: the 1.75-bit IQ type last
    fitting = {q for q, e in fits if e.fit == FITS}
    assert "q4_k_m" in fitting and "f32" not in fitting
    sizes = [e.weights_bytes for _, e in fits]
    assert sizes == sorted(sizes, reverse=True)


def test_bits_per_weight_come_from_the_output_type_registry() -> None:
    from tuillm.convert.types import OUTPUT_TYPES
    from tuillm.core.models.memory import QUANT_BPW

    assert QUANT_BPW == {name: t.bpw for name, t in OUTPUT_TYPES.items()}
    assert list(QUANT_BPW.values()) == sorted(QUANT_BPW.values(), reverse=True)  # quant_fits: largest first
