"""Every supported architecture: a tiny random checkpoint in transformers vs its GGUF in llama.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.checkpoints import TINY_ARCHS, tiny_random_checkpoint
from tuillm.core.conversion.job import convert_checkpoint
from tuillm.core.conversion.quality import compare, hf_logits
from tuillm.core.llama.logits import llama_logits

# Fixed, arbitrary token ids (the tokenizer is irrelevant to the logits).
IDS = [int(i) for i in np.random.default_rng(7).integers(100, 49000, size=48)]
# (output type, min top-1 agreement, max |logit diff|)
BOUNDS = {"f32": (0.99, 0.05), "f16": (0.99, 0.3), "q8_0": (0.90, 1.5)}


# Rope scaling variants (long IDS positions make the scaled frequencies matter).
ROPE_VARIANTS = {
    "llama-rope-llama3": ("llama", {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
    "qwen2-rope-linear": ("qwen2", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                                        "factor": 4.0}}),
}
CASES = {**{a: (a, None) for a in TINY_ARCHS}, **ROPE_VARIANTS}


@pytest.fixture(scope="module", params=list(CASES))
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    arch, overrides = CASES[request.param]
    # The folder name becomes general.name; llama.cpp treats names containing "phi3" specially (expects the
    # Phi-3 SentencePiece tokens), and these checkpoints carry the SmolLM2 vocabulary, so keep the arch out of it.
    folder = tiny_random_checkpoint(arch, tmp_path_factory.mktemp("tiny"), overrides=overrides)
    return folder, hf_logits(folder, IDS)


@pytest.mark.parametrize("out_type", list(BOUNDS))
def test_tiny_logits_match(tiny: tuple[Path, np.ndarray], out_type: str, tmp_path: Path) -> None:
    folder, reference = tiny
    out = convert_checkpoint(folder, tmp_path / f"tiny-{out_type}.gguf", out_type)
    result = compare(reference, llama_logits(out, IDS, threads=1), IDS)
    min_top1, max_diff = BOUNDS[out_type]
    assert result.top1_agreement >= min_top1, result
    assert result.max_abs_diff <= max_diff, result
