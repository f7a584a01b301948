"""The training-memory estimate: the shape read from a GGUF and an HF folder, the LoRA parameter count, and the
arithmetic (monotonic where it must be, flat where the loop makes it so, sane for the demo). How close it is to a
measured run is tests/bench/train_memory.py's job."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint
from tuillm.core.train.loop import TrainConfig
from tuillm.core.train.memory import (
    ModelShape,
    estimate_for_config,
    estimate_training,
    lora_params,
    model_shape,
)

GB = 1e9


@pytest.fixture(scope="module")
def demo(demo_gguf: Path) -> ModelShape:
    return model_shape(demo_gguf)


def test_shape_of_the_demo_from_its_gguf_and_its_hf_folder(demo: ModelShape) -> None:
    assert demo == ModelShape(params=134_515_008, n_layers=30, n_embd=576, n_ff=1536, n_head=9, n_head_kv=3,
                              head_dim=64, vocab_size=49152)
    assert model_shape(demo_hf_checkpoint()) == demo


def test_lora_parameter_count(demo: ModelShape) -> None:
    # Per layer: rank x (in + out) of q (576->576), k and v (576->192), o (576->576), gate and up (576->1536),
    # down (1536->576).
    per_layer = 8 * (1152 + 768 + 768 + 1152 + 2112 + 2112 + 2112)
    assert lora_params(demo, 8) == 30 * per_layer == 2_442_240
    assert lora_params(demo, 16) == 2 * lora_params(demo, 8)
    assert lora_params(demo, 8, ["q_proj", "v_proj"]) == 30 * 8 * (1152 + 768)
    assert lora_params(demo, 8, ["qkv_proj"]) == 30 * 8 * (1152 + 768 + 768)  # a fused projection, as its parts


def test_monotonic_in_rank_length_and_batch(demo: ModelShape) -> None:
    base = dict(rank=8, max_len=256, batch_size=4)

    def total(**kw: object) -> int:
        return estimate_training(demo, **{**base, **kw}).total_bytes  # type: ignore[arg-type]

    assert total(rank=4) < total(rank=8) < total(rank=64)
    assert total(max_len=64) < total(max_len=256) < total(max_len=1024)
    # On CPU a micro-batch runs as rows of max_len tokens (512 at least): its size adds only the allocator's slack
    # (one float32 logit row per token of the other rows); in one row (CUDA, or packing="row") it multiplies the
    # activations.
    slack = total(batch_size=16, max_len=512) - total(batch_size=1, max_len=512)
    assert slack == 15 * 512 * demo.vocab_size * 4
    assert total(batch_size=1, packing="row") < total(batch_size=4, packing="row") < total(batch_size=16,
                                                                                             packing="row")
    assert total(batch_size=16, packing="row") - total(batch_size=1, packing="row") > 2 * slack

    assert total(batch_size=2, device="cuda") < total(batch_size=8, device="cuda")
    assert total(grad_checkpointing=True, max_len=1024) < total(max_len=1024)
    assert total(trained_fraction=0.2) < total(trained_fraction=1.0)
    assert total(dropout=0.0) < total(dropout=0.1)


def test_rows_follow_the_attention(demo: ModelShape) -> None:
    """Attention example by example (the demo: no window, no soft-capping) fills CPU rows up to 512 tokens and
    holds one example's scores; a window shorter than an example keeps transformers' mask: rows of max_len."""
    short = estimate_training(demo, max_len=128, batch_size=8)
    assert short.tokens_per_pass == 512
    windowed = estimate_training(replace(demo, window=64), max_len=128, batch_size=8)
    capped = estimate_training(replace(demo, softcap=50.0), max_len=128, batch_size=8)
    assert windowed.tokens_per_pass == capped.tokens_per_pass == 128
    assert estimate_training(replace(demo, window=4096), max_len=128, batch_size=8) == short
    one_row = dict(max_len=512, batch_size=8, packing="row")
    # a 4,096-token row: per example, 512 x 512 scores at a time; masked, the whole row's
    assert (estimate_training(replace(demo, window=64), **one_row).activation_bytes  # type: ignore[arg-type]
            > estimate_training(demo, **one_row).activation_bytes + 5 * GB)  # type: ignore[arg-type]


def test_sane_magnitudes_for_the_demo(demo: ModelShape) -> None:
    cpu = estimate_training(demo, rank=8, max_len=64, batch_size=1, dtype="float32")
    assert (cpu.device, cpu.dtype, cpu.tokens_per_pass) == ("cpu", "float32", 64)
    assert cpu.weights_bytes == demo.params * 4
    assert cpu.lora_bytes == 2_442_240 * 16  # weights, gradients and AdamW's two moments, float32
    # Measured peak RSS of this run: about 1.3 GB (most of it the runtime and the float32 weights).
    assert 1.0 * GB < cpu.total_bytes < 1.8 * GB
    assert cpu.activation_bytes < cpu.weights_bytes
    gpu = estimate_training(demo, rank=8, max_len=64, batch_size=1, device="cuda")
    assert (gpu.dtype, gpu.weights_bytes, gpu.runtime_bytes) == ("bfloat16", demo.params * 2, 0)
    assert gpu.total_bytes < cpu.total_bytes
    long = estimate_training(demo, rank=8, max_len=1024, batch_size=1, dtype="float32")
    assert 3.2 * GB < long.total_bytes < 4.6 * GB  # measured about 3.8 GB
    assert long.to_json()["total_bytes"] == long.total_bytes


def test_from_a_train_config(demo: ModelShape) -> None:
    config = TrainConfig(base="demo", data=[], output="out", rank=8, max_len=128, batch_size=2)
    est = estimate_for_config(demo, config)
    assert est == estimate_training(demo, rank=8, max_len=128, batch_size=2)  # device "auto" counts as CPU
    assert estimate_for_config(demo, replace(config, device="cuda")).device == "cuda"


def test_bf16_dpo_and_processes(demo: ModelShape, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 halves the weights and shrinks the saved activations (not the float32 residual stream, logits, LoRA
    state or runtime);
    DPO runs a pair's two answers in one pass (about twice the activations, no second base: the reference is the
    base with the adapter off); N processes on CPU hold N copies, on CUDA one per GPU."""
    from tuillm.core.models import hardware

    kw = dict(rank=8, max_len=512, batch_size=2)
    f32 = estimate_training(demo, dtype="float32", **kw)  # type: ignore[arg-type]
    bf16 = estimate_training(demo, dtype="bfloat16", **kw)  # type: ignore[arg-type]
    assert f32.weights_bytes == demo.params * 4 and bf16.weights_bytes == demo.params * 2
    assert (bf16.lora_bytes, bf16.runtime_bytes) == (f32.lora_bytes, f32.runtime_bytes)
    assert f32.activation_bytes / 2 < bf16.activation_bytes < f32.activation_bytes  # logits stay float32
    for flags, expected in (("avx512f avx512_bf16", "bfloat16"), ("avx2 fma", "float32")):
        monkeypatch.setattr(hardware, "cpu_features", lambda flags=flags: tuple(flags.split()))
        assert estimate_training(demo, **kw).dtype == expected  # type: ignore[arg-type]
    dpo = estimate_training(demo, dtype="bfloat16", method="dpo", **kw)  # type: ignore[arg-type]
    assert dpo.weights_bytes == bf16.weights_bytes and dpo.tokens_per_pass == 2 * bf16.tokens_per_pass
    assert 1.8 * bf16.activation_bytes < dpo.activation_bytes < 4 * bf16.activation_bytes
    two = estimate_training(demo, dtype="bfloat16", nproc=2, **kw)  # type: ignore[arg-type]
    assert two.process_bytes == bf16.total_bytes and two.total_bytes == 2 * bf16.total_bytes
    gpu = estimate_training(demo, device="cuda", nproc=2, **kw)  # type: ignore[arg-type]
    assert gpu.total_bytes == gpu.process_bytes  # per GPU
    # FSDP: a GPU holds its half of the base and one layer gathered; on CPU each process loads it whole first
    sharded = estimate_training(demo, device="cuda", nproc=2, fsdp=True, **kw)  # type: ignore[arg-type]
    whole = gpu.weights_bytes
    assert sharded.weights_bytes == whole // 2 + whole // demo.n_layers
    assert estimate_training(demo, dtype="bfloat16", nproc=2, fsdp=True, **kw) == two  # type: ignore[arg-type]
    config = TrainConfig(base="demo", data=[], output="out", method="dpo", nproc=3, dtype="bfloat16", **kw)
    assert estimate_for_config(demo, config) == estimate_training(demo, dtype="bfloat16", method="dpo", nproc=3,
                                                                  **kw)  # type: ignore[arg-type]
