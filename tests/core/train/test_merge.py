"""merge: the temporary merged checkpoint takes 2 bytes a weight unless the output needs float32, and the GGUF it
gives is the one the float32 merge gives (bit for bit for f16 and llama.cpp's quant types; within q8_0's own
rounding for q8_0)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.convert.test_lora_to_gguf import make_adapter, merged_checkpoint
from tuillm.convert.checkpoint import open_checkpoint
from tuillm.core.conversion.job import convert_checkpoint
from tuillm.core.train.merge import _merge_to_folder, merge


@pytest.fixture(scope="module")
def bf16_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tiny_random_checkpoint("llama", tmp_path_factory.mktemp("base"), dtype="bfloat16")
    return base, make_adapter(base, tmp_path_factory.mktemp("adapter") / "lora")


@pytest.fixture(scope="module")
def f32_merged(bf16_base: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What merge used to convert from: the float32 merge saved as it is."""
    return merged_checkpoint(*bf16_base, tmp_path_factory.mktemp("f32-merged"))


def _dtypes(folder: Path) -> set[str]:
    return {t.dtype for t in open_checkpoint(folder).tensors.values()}


@pytest.mark.parametrize(("out_type", "dtype"), [("f32", "F32"), ("bf16", "BF16"), ("f16", "F16"),
                                                 ("q8_0", "F16"), ("q4_k_m", "F16")])
def test_merged_folder_dtype_follows_the_output(bf16_base: tuple[Path, Path], tmp_path: Path, out_type: str,
                                                dtype: str) -> None:
    _merge_to_folder(*bf16_base, tmp_path, out_type)
    assert _dtypes(tmp_path) == {dtype}


def test_float32_base_keeps_float32_for_q8_0(tmp_path: Path) -> None:
    base = tiny_random_checkpoint("llama", tmp_path / "base")  # float32
    adapter = make_adapter(base, tmp_path / "lora")
    _merge_to_folder(base, adapter, tmp_path / "q8", "q8_0")
    assert _dtypes(tmp_path / "q8") == {"F32"}
    _merge_to_folder(base, adapter, tmp_path / "f16", "f16")
    assert _dtypes(tmp_path / "f16") == {"F16"}


def _tensors(path: Path) -> dict[str, tuple[int, bytes]]:
    return {t.name: (int(t.tensor_type), bytes(np.asarray(t.data).tobytes())) for t in gguf.GGUFReader(path).tensors}


@pytest.mark.slow
@pytest.mark.parametrize("out_type", ["f16", "q4_k_m"])
def test_same_gguf_as_the_float32_merge(bf16_base: tuple[Path, Path], f32_merged: Path, tmp_path: Path,
                                        out_type: str) -> None:
    out = merge(*bf16_base, tmp_path / "merged.gguf", out_type)
    reference = convert_checkpoint(f32_merged, tmp_path / "reference.gguf", out_type)
    assert _tensors(out) == _tensors(reference)


@pytest.mark.slow
def test_q8_0_as_close_to_the_exact_merge(bf16_base: tuple[Path, Path], f32_merged: Path, tmp_path: Path) -> None:
    """q8_0 is encoded from the checkpoint's values: the f16 step moves a few values across a rounding midpoint
    (measured: 0.02% of the bytes), which leaves the error against the exact merged weights unchanged."""
    from gguf.quants import dequantize

    out = merge(*bf16_base, tmp_path / "merged.gguf", "q8_0")
    reference = convert_checkpoint(f32_merged, tmp_path / "reference.gguf", "q8_0")
    exact = {t.name: np.asarray(t.data, np.float32) for t in
             gguf.GGUFReader(convert_checkpoint(f32_merged, tmp_path / "exact.gguf", "f32")).tensors}

    def rms_error(path: Path) -> float:
        q8 = [t for t in gguf.GGUFReader(path).tensors if t.tensor_type == gguf.GGMLQuantizationType.Q8_0]
        errors = [dequantize(np.asarray(t.data), t.tensor_type).reshape(exact[t.name].shape) - exact[t.name]
                  for t in q8]
        return float(np.sqrt(np.mean(np.concatenate([e.ravel() for e in errors]).astype(np.float64) ** 2)))

    got, want = _tensors(out), _tensors(reference)
    assert got.keys() == want.keys()
    changed = sum(int((np.frombuffer(got[n][1], np.uint8) != np.frombuffer(want[n][1], np.uint8)).sum()) for n in got)
    assert changed < 0.01 * sum(len(v[1]) for v in got.values())
    assert rms_error(out) <= 1.001 * rms_error(reference)


def test_merge_converts_through_the_one_orchestrator(bf16_base: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """merge has no conversion steps of its own: what it writes comes out of convert_many, as the Convert pane's
    and `tuillm convert`'s files do."""
    import tuillm.core.conversion.job as job

    real, calls = job.convert_many, []

    def spy(src, outputs, **kwargs):  # noqa: ANN001, ANN202 - a transparent wrapper
        calls.append([out_type for out_type, _path in outputs])
        return real(src, outputs, **kwargs)

    monkeypatch.setattr(job, "convert_many", spy)
    out = merge(*bf16_base, tmp_path / "merged.gguf", "q4_k_m")
    assert calls == [["q4_k_m"]]
    assert out.is_file() and list(tmp_path.iterdir()) == [out]  # the temporary checkpoint and intermediate are gone


def test_a_bad_adapter_is_refused_before_the_gguf_base_is_dequantized(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge and export read the adapter first: a folder that is not one is refused in one line, before a GGUF base
    is dequantized for it (minutes and gigabytes on a large base)."""
    from tuillm.core.errors import TuillmError
    from tuillm.core.paths import demo_model_path
    from tuillm.core.train.merge import export_lora

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the demo not dequantized yet
    (tmp_path / "not-an-adapter").mkdir()
    events: list = []
    with pytest.raises(TuillmError, match="no adapter_config.json"):
        merge(demo_model_path(), tmp_path / "not-an-adapter", tmp_path / "merged.gguf", emit=events.append)
    with pytest.raises(TuillmError, match="no adapter_config.json"):
        export_lora(tmp_path / "not-an-adapter", demo_model_path(), tmp_path / "lora.gguf", emit=events.append)
    (tmp_path / "file").write_text("x")
    for out, why in ((tmp_path / "file" / "m.gguf", "not a folder"), (tmp_path / "none" / "m.gguf", "no such folder")):
        with pytest.raises(TuillmError, match=f"^{out.parent}: {why}$"):
            merge(demo_model_path(), tmp_path / "not-an-adapter", out, emit=events.append)
    assert events == [] and not (tmp_path / "cache").exists()
