"""Size estimates before converting, checked against the real files: the per-tensor types must be llama.cpp's own
and the sizes within 1% (the estimate reads headers only; the HF side estimates the vocabulary's metadata)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import gguf
import pytest

from tests.checkpoints import demo_hf_checkpoint, tiny_random_checkpoint
from tuillm.convert.gguf_header import read_gguf_header
from tuillm.convert.quantize import output_tensor_types
from tuillm.core.conversion.job import convert_many
from tuillm.core.conversion.plan import (
    estimate_size,
    estimate_sizes,
    open_source,
    output_name,
    plan_outputs,
    report_fits,
)
from tuillm.core.errors import TuillmError

TOLERANCE = 0.01  # the stated accuracy of the size estimate
DEMO_TYPES = ("bf16", "q8_0", "q4_k_m", "q2_k")


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo checkpoint converted to several types in one job (one shared bf16)."""
    src = open_source(demo_hf_checkpoint())
    out = tmp_path_factory.mktemp("demo-out")
    results = convert_many(src.path, plan_outputs(src, list(DEMO_TYPES), out))
    return {r.out_type: r.path for r in results}


def _actual_types(path: Path) -> dict[str, gguf.GGMLQuantizationType]:
    return {t.name: gguf.GGMLQuantizationType[t.type_name] for t in read_gguf_header(path).tensors}


@pytest.mark.slow
def test_demo_estimates_match_real_outputs(demo_outputs: dict[str, Path]) -> None:
    src = open_source(demo_hf_checkpoint())
    assert src.kind == "hf" and 130e6 < src.params < 140e6
    sizes = estimate_sizes(src)
    for out_type, path in demo_outputs.items():
        real = path.stat().st_size
        assert abs(sizes[out_type] - real) / real < TOLERANCE, (out_type, sizes[out_type], real)
    # The sizes follow the types: a 2-bit file is well under a 4-bit one, which is under q8_0.
    assert sizes["q2_k"] < sizes["q4_k_m"] < sizes["q8_0"] < sizes["bf16"] < sizes["f32"]


@pytest.mark.slow
def test_demo_tensor_types_are_llama_cpps(demo_outputs: dict[str, Path]) -> None:
    """The prediction per tensor, not only the total: SmolLM2's 576-wide rows exercise the K-quant fallbacks,
    its tied embedding the output-head rule, and the _M types their extra bits on attn_v/ffn_down."""
    src = open_source(demo_hf_checkpoint())
    for out_type in ("q4_k_m", "q2_k"):
        predicted = dict(zip([t.name for t in src.tensors],
                             output_tensor_types(src.tensors, out_type, n_gqa=src.n_gqa), strict=True))
        assert _actual_types(demo_outputs[out_type]) == predicted, out_type
    assert len(set(predicted.values())) > 2  # the check covers a real mix of types


@pytest.mark.slow
def test_requantize_estimate_from_a_gguf(demo_outputs: dict[str, Path]) -> None:
    """A GGUF source: the metadata is copied from it, so the estimate is close to exact."""
    src = open_source(demo_outputs["bf16"])
    assert src.kind == "gguf" and src.mode == "requantize"
    for out_type in ("q4_k_m", "q8_0"):
        real = demo_outputs[out_type].stat().st_size
        assert abs(estimate_size(src, out_type) - real) / real < 0.001


def test_untied_output_head(tmp_path: Path) -> None:
    """An untied model (output.weight present): the head, not the embedding, gets llama.cpp's extra bits."""
    ck = tiny_random_checkpoint("llama", tmp_path / "ck")
    src = open_source(ck)
    assert any(t.name == "output.weight" for t in src.tensors)
    results = {r.out_type: r.path for r in convert_many(ck, plan_outputs(src, ["q4_k_m", "q8_0"], tmp_path))}
    for out_type, path in results.items():
        real = path.stat().st_size
        assert abs(estimate_size(src, out_type) - real) / real < 0.05  # tiny: the metadata is most of it
    predicted = dict(zip([t.name for t in src.tensors],
                         output_tensor_types(src.tensors, "q4_k_m", n_gqa=src.n_gqa), strict=True))
    assert _actual_types(results["q4_k_m"]) == predicted
    assert predicted["output.weight"] != predicted["token_embd.weight"]


def test_names(tmp_path: Path) -> None:
    assert output_name("SmolLM2-135M", "q4_k_m") == "SmolLM2-135M-Q4_K_M.gguf"
    snapshot = tmp_path / "models--HuggingFaceTB--SmolLM2-135M" / "snapshots" / "0123abcd"
    from tuillm.core.conversion.plan import gguf_name, hf_name

    assert hf_name(snapshot) == "SmolLM2-135M"
    assert hf_name(tmp_path / "my-model") == "my-model"
    assert gguf_name(Path("x/Qwen2-0.5B-F16.gguf")) == "Qwen2-0.5B"
    assert gguf_name(Path("x/model.q4_k_m.gguf")) == "model"
    assert gguf_name(Path("x/smollm2.gguf")) == "smollm2"


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(TuillmError, match="no such file"):
        open_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TuillmError, match="not a GGUF file"):
        open_source(tmp_path / "notes.txt")
    with pytest.raises(TuillmError, match="no config.json"):
        open_source(tmp_path)


def test_the_size_estimate_reads_no_huge_tokenizer_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The estimate read tokenizer.json and tokenizer_config.json whole: a sparse 200 GB one made `tuillm quants`
    # a MemoryError (a crash report). Past the limit it is not read, and the estimate falls back to the rows.
    from tuillm.convert import safetensors_header
    from tuillm.convert.tensors import TensorShape
    from tuillm.core.conversion.plan import _hf_header_bytes

    tokens = {f"t{i}": i for i in range(100)}
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": tokens}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "x" * 5000}))
    embedding = [TensorShape("token_embd.weight", (8, 100))]
    read = _hf_header_bytes(tmp_path, embedding)
    monkeypatch.setattr(safetensors_header, "MAX_SMALL_FILE_BYTES", 1000)
    assert _hf_header_bytes(tmp_path, embedding) == read - 5000 - sum(8 + len(t) + 8 for t in tokens) + 32 * 100


def test_the_size_estimate_does_not_wait_on_a_fifo(tmp_path: Path) -> None:
    # A FIFO named tokenizer.json blocked the read for good: `tuillm quants` (and the Convert pane's worker) hung.
    from tuillm.convert.tensors import TensorShape
    from tuillm.core.conversion.plan import _hf_header_bytes

    os.mkfifo(tmp_path / "tokenizer.json")
    found: list[int] = []
    worker = threading.Thread(target=lambda: found.append(_hf_header_bytes(tmp_path, [TensorShape("x", (8, 10))])),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert found, "the estimate waited on the FIFO"


def test_report_is_offered_when_it_fits() -> None:
    src = open_source(demo_hf_checkpoint())  # 135M params: ~0.7 GB in float32 with a q8_0 beside it
    assert report_fits(src, 12 * 2**30)
    assert not report_fits(src, 512 * 2**20)
