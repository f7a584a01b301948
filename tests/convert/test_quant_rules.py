"""The per-tensor type prediction for the IQ types, checked against real llama.cpp outputs of the demo model
(the in-library quantizer: these types need no importance matrix and no built tools), and the sizes from it."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from tuillm.convert.errors import ConvertError
from tuillm.convert.gguf_header import read_gguf_header
from tuillm.convert.quant_rules import output_tensor_types, requires_imatrix
from tuillm.convert.quantize import quantize_gguf
from tuillm.convert.types import IMATRIX_TYPE_NAMES, OUTPUT_TYPES
from tuillm.core.conversion.plan import estimate_size, open_source

Q = gguf.GGMLQuantizationType
PLAIN_IQ = ("iq4_xs", "iq4_nl", "iq3_m", "iq3_s")  # written without an importance matrix


@pytest.fixture(scope="module")
def plain_iq(demo_f16: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("iq")
    return {t: quantize_gguf(demo_f16, out / f"demo-{t}.gguf", t) for t in PLAIN_IQ}


def _actual(path: Path) -> dict[str, Q]:
    return {t.name: Q[t.type_name] for t in read_gguf_header(path).tensors}


@pytest.mark.slow
def test_iq_predictions_are_llama_cpps(demo_f16: Path, plain_iq: dict[str, Path]) -> None:
    src = open_source(demo_f16)
    for out_type, path in plain_iq.items():
        predicted = output_tensor_types(src.tensors, out_type, n_gqa=src.n_gqa)
        assert _actual(path) == dict(zip([t.name for t in src.tensors], predicted, strict=True)), out_type
        real = path.stat().st_size
        assert abs(estimate_size(src, out_type) - real) / real < 0.001, out_type
    # SmolLM2's 576-wide rows do not split into 256-value blocks: those fall back to IQ4_NL, the 1536-wide
    # ffn_down keeps the type's own; iq4_xs without a matrix gives the first eighth of ffn_down Q5_K.
    types = _actual(plain_iq["iq4_xs"])
    assert types["blk.0.attn_q.weight"] == Q.IQ4_NL and types["blk.10.ffn_down.weight"] == Q.IQ4_XS
    assert types["blk.0.ffn_down.weight"] == Q.Q5_K
    assert _actual(plain_iq["iq3_m"])["blk.0.attn_output.weight"] == Q.Q5_0  # Q4_K's fallback on 576 columns


def test_the_imatrix_types_are_refused_without_one(demo_f16: Path, tmp_path: Path) -> None:
    src = open_source(demo_f16)
    for out_type in IMATRIX_TYPE_NAMES:
        assert OUTPUT_TYPES[out_type].needs_imatrix
        types = output_tensor_types(src.tensors, out_type, n_gqa=src.n_gqa, imatrix=True)
        assert requires_imatrix(src.tensors, types), out_type
    for out_type in PLAIN_IQ + ("q2_k", "q4_k_m"):
        assert not requires_imatrix(src.tensors, output_tensor_types(src.tensors, out_type, n_gqa=src.n_gqa))
    with pytest.raises(ConvertError, match="iq2_xs needs an importance matrix"):
        quantize_gguf(demo_f16, tmp_path / "x.gguf", "iq2_xs")
    assert list(tmp_path.iterdir()) == []


def test_overrides_in_the_prediction(demo_f16: Path) -> None:
    """A matching --tensor-type replaces the mix (first match wins) and still falls back on odd rows; the
    output head and embedding shortcuts are anchored patterns."""
    src = open_source(demo_f16)
    names = [t.name for t in src.tensors]
    plain = dict(zip(names, output_tensor_types(src.tensors, "q4_k_m", n_gqa=src.n_gqa), strict=True))
    over = dict(zip(names, output_tensor_types(src.tensors, "q4_k_m", n_gqa=src.n_gqa, tensor_types={
        r"^token_embd\.weight$": "q4_0", "ffn_down": "q3_k", "ffn_": "f16", "attn_q": "q6_k"}), strict=True))
    assert over["token_embd.weight"] == Q.Q4_0 and plain["token_embd.weight"] != Q.Q4_0
    assert over["blk.3.ffn_down.weight"] == Q.Q3_K  # the first match, not "ffn_"
    assert over["blk.3.ffn_up.weight"] == Q.F16
    assert over["blk.3.attn_q.weight"] == Q.Q8_0  # Q6_K does not split 576 columns: its fallback
    assert over["blk.3.attn_k.weight"] == plain["blk.3.attn_k.weight"]  # untouched
    assert over["blk.3.attn_norm.weight"] == plain["blk.3.attn_norm.weight"] == Q.F32
    assert estimate_size(src, "q4_k_m", tensor_types={"ffn_": "f16"}) > estimate_size(src, "q4_k_m")
