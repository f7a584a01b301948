"""Rope scaling through the converter: transformers vs llama.cpp logits on tiny random checkpoints.

Each case sets a small ``original_max_position_embeddings`` (32) and runs 96 tokens, so YaRN's ramp, the llama3
divisors and Phi-3's long factors all act well past the original context. Every case also checks that the
scaling matters at these positions (the scaled model's logits differ from the unscaled one's by far more than
the parity tolerance), so a converter that dropped the scaling could not pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import convert_hf
from tuillm.core.conversion.quality import compare, hf_logits
from tuillm.core.llama.logits import llama_logits

ORIG = 32
IDS = [int(i) for i in np.random.default_rng(11).integers(100, 49000, size=3 * ORIG)]
MIN_TOP1, MAX_DIFF = 0.99, 0.05  # f32, as in test_tiny_parity
MIN_EFFECT = 0.5  # scaled vs unscaled transformers logits must differ by at least this (10x the tolerance)

LONG_FACTOR = [1.0, 1.7, 2.4, 3.1]  # phi3 tiny: head_dim 16, partial_rotary_factor 0.5 -> 4 frequencies
SHORT_FACTOR = [1.0, 1.1, 1.2, 1.3]

# name -> (arch, config overrides, expected GGUF metadata (key suffix -> value))
CASES = {
    "llama-yarn": ("llama", {"rope_parameters": {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": ORIG}},
        {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0, "rope.scaling.original_context_length": ORIG}),
    # An explicit attention_factor replaces YaRN's mscale in transformers; llama.cpp multiplies its own mscale by
    # rope.scaling.attn_factor, so the converter writes the ratio 1.3 / (1 + 0.1 ln 8).
    "qwen3-yarn-attention-factor": ("qwen3", {"rope_parameters": {
        "rope_type": "yarn", "rope_theta": 1000000.0, "factor": 8.0, "original_max_position_embeddings": ORIG,
        "attention_factor": 1.3}},
        {"rope.scaling.type": "yarn", "rope.scaling.attn_factor": pytest.approx(1.3 / (1 + 0.1 * np.log(8)))}),
    "qwen2-yarn-mscale": ("qwen2", {"rope_parameters": {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": ORIG,
        "mscale": 1.0, "mscale_all_dim": 0.5}}, {"rope.scaling.type": "yarn"}),
    "llama-linear": ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}},
                     {"rope.scaling.type": "linear", "rope.scaling.factor": 4.0}),
    "llama-llama3": ("llama", {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": ORIG}}, {}),
    # Gemma 3's real use of linear scaling: the global layers only, the local ones keep their own base.
    "gemma3-linear-global": ("gemma3", {"rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}},
        {"rope.scaling.type": "linear", "rope.scaling.factor": 8.0}),
    # Phi-3 keeps original_max_position_embeddings at the top level (transformers gives it priority).
    "phi3-longrope": ("phi3", {"original_max_position_embeddings": ORIG, "rope_parameters": {
        "rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
        "long_factor": LONG_FACTOR, "short_factor": SHORT_FACTOR}},
        {"rope.scaling.original_context_length": ORIG,
         # sqrt(1 + ln(512 / 32) / ln 32), 512 = max_position_embeddings of the tiny config
         "rope.scaling.attn_factor": pytest.approx(np.sqrt(1 + np.log(512 / ORIG) / np.log(ORIG)))}),
}


def _meta(path: Path) -> dict:
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    return {name.removeprefix(arch + "."): reader.fields[name].contents() for name in reader.fields
            if ".rope." in name}


@pytest.fixture(scope="module")
def unscaled_logits(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a caching lookup
    """transformers logits of the same random weights without rope scaling, per architecture (built lazily)."""
    cache: dict[str, np.ndarray] = {}

    def get(arch: str) -> np.ndarray:
        if arch not in cache:
            folder = tiny_random_checkpoint(arch, tmp_path_factory.mktemp(f"plain-{arch}"))
            cache[arch] = hf_logits(folder, IDS)
        return cache[arch]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_rope_scaling_logits_match(case: str, tmp_path: Path, unscaled_logits) -> None:  # noqa: ANN001
    arch, overrides, expected = CASES[case]
    folder = tiny_random_checkpoint(arch, tmp_path / "ckpt", overrides=overrides)
    reference = hf_logits(folder, IDS)
    # name: llama.cpp treats a model named like "phi3" as the real Phi-3 (its vocabulary); this one is SmolLM2's.
    out = convert_hf(folder, tmp_path / "tiny.gguf", "f32", name="tiny")
    meta = _meta(out)
    for key, value in expected.items():
        assert meta.get(key) == value, (key, meta)
    result = compare(reference, llama_logits(out, IDS, threads=1), IDS)
    assert result.top1_agreement >= MIN_TOP1, result
    assert result.max_abs_diff <= MAX_DIFF, result
    effect = float(np.abs(reference - unscaled_logits(arch)).max())
    assert effect >= MIN_EFFECT, f"rope scaling barely changes this model's logits ({effect:.3f})"


def test_longrope_picks_factors_by_context_size_in_llama_cpp(tmp_path: Path) -> None:
    """A known difference, pinned: the long/short choice.

    transformers uses the short factors while the sequence is within original_max_position_embeddings; llama.cpp
    chooses once per context, by its size (n_ctx_seq > original context -> long factors), and pads n_ctx to a
    multiple of 256. So here (original 32) llama.cpp uses the long factors even for 24 tokens: its logits match
    transformers' long-factor logits, and differ from transformers' own 24-token logits (~0.85 max |diff| on
    this model). For a real Phi-3 (original 4096) llama.cpp matches transformers while n_ctx <= 4096.
    """
    arch, overrides, _ = CASES["phi3-longrope"]
    folder = tiny_random_checkpoint(arch, tmp_path / "ckpt", overrides=overrides)
    out = convert_hf(folder, tmp_path / "tiny.gguf", "f32", name="tiny")
    short_ids = IDS[:24]
    llama = llama_logits(out, short_ids, threads=1)
    hf_long = hf_logits(folder, IDS)[: len(short_ids)]  # causal: the first 24 rows, computed with long factors
    hf_short = hf_logits(folder, short_ids)
    assert compare(hf_long, llama, short_ids).max_abs_diff <= MAX_DIFF
    assert compare(hf_short, llama, short_ids).max_abs_diff >= 10 * MAX_DIFF


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("qwen2", tmp_path_factory.mktemp("qwen2"))


@pytest.mark.parametrize(("rope", "message"), [
    # llama.cpp reads yarn_beta_fast/slow only for a few other architectures and runs these with 32/1: converted
    # anyway, 16/2 would give a model 3.0 logits off transformers (measured on the tiny qwen2).
    ({"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": ORIG, "beta_fast": 16.0,
      "beta_slow": 2.0}, "beta_fast/beta_slow 16/2 are not supported"),
    ({"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": ORIG, "truncate": False},
     "truncate=false is not supported"),
    # llama3 and longrope need per-frequency tensors that llama.cpp loads for llama/mistral and phi3 only.
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": ORIG}, "rope type 'llama3' is not supported for qwen2"),
    ({"rope_type": "longrope", "long_factor": LONG_FACTOR * 2, "short_factor": SHORT_FACTOR * 2,
      "original_max_position_embeddings": ORIG}, "rope type 'longrope' is not supported for qwen2"),
])
def test_rope_llama_cpp_cannot_run_is_refused(qwen2_folder: Path, tmp_path: Path, rope: dict, message: str) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for f in qwen2_folder.iterdir():
        (folder / f.name).symlink_to(f)
    config = json.loads((qwen2_folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_theta": 10000.0, **rope}
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match=message):
        convert_hf(folder, tmp_path / "out.gguf", "f32")
    assert not (tmp_path / "out.gguf").exists()
