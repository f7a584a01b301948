"""PEFT LoRA -> GGUF adapter: the keys and tensor layout llama.cpp expects, and the proof that counts —
llama.cpp running the base GGUF with the adapter gives the logits of the merged model (scale alpha/rank, the
q/k row permutation) on tiny random checkpoints of two architectures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.errors import ConvertError
from tuillm.convert.lora_to_gguf import lora_to_gguf, open_adapter
from tuillm.core.llama.logits import llama_logits

TOKENS = [1, 450, 4937, 17354, 1102, 100, 2000, 30000, 77, 5, 9000, 123]


def make_adapter(base: Path, out: Path, *, rank: int = 4, alpha: float = 16, seed: int = 1,
                 targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj")) -> Path:
    """A PEFT adapter with random (non-zero) A and B, so every tensor matters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=False,
                                             target_modules=[t for t in targets if t in present]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.save_pretrained(out)
    return out


def merged_checkpoint(base: Path, adapter: Path, out: Path) -> Path:
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    model.merge_and_unload().save_pretrained(out)
    for f in base.iterdir():
        if f.name.startswith("tokenizer") or f.name.endswith(".jinja"):
            shutil.copyfile(f, out / f.name)
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llama_cpp_with_the_adapter_matches_the_merged_model(tmp_path: Path, arch: str) -> None:
    from tuillm.convert.hf_to_gguf import convert_hf

    base = tiny_random_checkpoint(arch, tmp_path / "base")
    adapter = make_adapter(base, tmp_path / "adapter")
    merged = merged_checkpoint(base, adapter, tmp_path / "merged")
    base_gguf = convert_hf(base, tmp_path / "base.gguf", "f32")
    merged_gguf = convert_hf(merged, tmp_path / "merged.gguf", "f32")
    lora_gguf = lora_to_gguf(adapter, base, tmp_path / "adapter.gguf", "f32")

    plain = llama_logits(base_gguf, TOKENS, threads=2)
    want = llama_logits(merged_gguf, TOKENS, threads=2)
    got = llama_logits(base_gguf, TOKENS, threads=2, lora=lora_gguf)
    scale = np.abs(want).max()
    # The adapter changes the output a lot, and with it llama.cpp lands on the merged model's logits.
    assert np.abs(plain - want).max() > 0.05 * scale
    assert np.abs(got - want).max() < 1e-3 * scale
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_gguf_keys_names_and_orientation(tmp_path: Path) -> None:
    import gguf

    base = tiny_random_checkpoint("llama", tmp_path / "base")
    adapter = make_adapter(base, tmp_path / "adapter", rank=4, alpha=8)
    out = lora_to_gguf(adapter, base, tmp_path / "a.gguf", "f16")
    reader = gguf.GGUFReader(out)
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("adapter.type").contents() == "lora"
    assert reader.get_field("adapter.lora.alpha").contents() == pytest.approx(8.0)
    assert reader.get_field("general.architecture").contents() == "llama"
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 7 * 2  # 7 modules in 2 layers, a and b each
    a, b = tensors["blk.1.ffn_down.weight.lora_a"], tensors["blk.1.ffn_down.weight.lora_b"]
    # ggml order (ne): a is [in, rank], b is [rank, out]: PEFT's [rank, in] and [out, rank] as stored.
    assert list(a.shape) == [128, 4] and list(b.shape) == [4, 64]
    assert a.tensor_type == gguf.GGMLQuantizationType.F16
    assert not (tmp_path / "a.gguf").with_name(".a.gguf.lora").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_rslora_alpha_keeps_the_peft_scale(tmp_path: Path) -> None:
    base = tiny_random_checkpoint("llama", tmp_path / "base")
    adapter = make_adapter(base, tmp_path / "adapter", rank=4, alpha=8)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["use_rslora"] = True
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    # PEFT scales rsLoRA by alpha/sqrt(r) = 4; llama.cpp by alpha'/r, so alpha' = 16.
    assert open_adapter(adapter).gguf_alpha() == pytest.approx(16.0)


def test_adapter_of_another_model_is_one_error(tmp_path: Path) -> None:
    base = tiny_random_checkpoint("llama", tmp_path / "base")
    other = tiny_random_checkpoint("qwen3", tmp_path / "other")  # head_dim 32: other q/k/v/o shapes
    adapter = make_adapter(other, tmp_path / "adapter")
    with pytest.raises(ConvertError) as err:
        lora_to_gguf(adapter, base, tmp_path / "a.gguf")
    msg = str(err.value)
    assert "does not fit the base" in msg and "give the base it was trained on" in msg and "\n" not in msg
    assert not (tmp_path / "a.gguf").exists()


def test_not_an_adapter_folder(tmp_path: Path) -> None:
    base = tiny_random_checkpoint("llama", tmp_path / "base")
    with pytest.raises(ConvertError, match="no adapter_config.json"):
        lora_to_gguf(base, base, tmp_path / "a.gguf")
