"""The base of a run: an HF folder as it is; bad paths; a dequantized copy whose end token is not the GGUF's made
again. (A GGUF dequantized into the cache: the demo, for real, in tests/tui/cli/test_train.py's end-to-end test.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.train.base import base_folder, pick_dtype, same_end_token


def test_hf_folder_is_used_as_is_and_bad_paths_say_why(tmp_path: Path) -> None:
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{}")
    assert base_folder(tmp_path / "ck") == tmp_path / "ck"
    with pytest.raises(ModelFileError, match="no config.json"):
        base_folder(tmp_path)
    (tmp_path / "notes.gguf").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a GGUF file or an HF checkpoint folder"):
        base_folder(tmp_path / "notes.gguf")


def test_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: bf16 on a CPU with bf16 units (AVX-512 BF16 or AMX, from /proc/cpuinfo's flags), float32 on one
    without (bf16 would be emulated, slower); an explicit dtype is taken as it is, an unknown one refused."""
    from tuillm.core.models import hardware

    avx512 = "flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16\n"
    amx = "flags\t\t: fpu sse2 avx avx2 avx512f amx_tile amx_bf16\n"
    plain = "flags\t\t: fpu sse2 avx avx2 fma\n"
    cases = [(hardware.cpu_features(text, "x86_64"), expected)
             for text, expected in ((avx512, "bfloat16"), (amx, "bfloat16"), (plain, "float32"))]
    for features, expected in cases:
        assert hardware.cpu_bf16(features) is (expected == "bfloat16")
        monkeypatch.setattr(hardware, "cpu_features", lambda features=features: features)
        assert pick_dtype("cpu") == expected
    assert pick_dtype("cpu", "bfloat16") == "bfloat16" and pick_dtype("cpu", "float32") == "float32"
    assert pick_dtype("mps") == "bfloat16"
    with pytest.raises(TuillmError, match="unknown dtype 'half'"):
        pick_dtype("cpu", "half")


def test_quant_4bit_is_refused_without_cuda(tmp_path: Path) -> None:
    """QLoRA needs CUDA (bitsandbytes): on CPU or MPS one line before anything loads."""
    from tuillm.core.train.model import check_quant

    check_quant("none", "cpu")
    for device in ("cpu", "mps"):
        with pytest.raises(TuillmError, match=rf"--quant 4bit \(QLoRA\) needs a CUDA GPU .*this run is on {device}"):
            check_quant("4bit", device)


def test_merge_of_a_qlora_adapter_without_cuda_uses_the_full_precision_base(tmp_path: Path) -> None:
    """A QLoRA adapter (training.json says quant 4bit) merges into the dequantized NF4 base on CUDA only; here the
    merge says it falls back to the full-precision base. Other adapters take that base without a word."""
    import json

    import torch

    from tuillm.core.events import Log
    from tuillm.core.train.merge import qlora_base

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the merge would dequantize the NF4 base")
    events: list = []
    assert qlora_base(tmp_path, tmp_path, events.append) is None and events == []  # no training.json
    (tmp_path / "training.json").write_text(json.dumps({"quant": "none"}))
    assert qlora_base(tmp_path, tmp_path, events.append) is None and events == []
    (tmp_path / "training.json").write_text(json.dumps({"quant": "4bit"}))
    assert qlora_base(tmp_path, tmp_path, events.append) is None
    assert [e.level for e in events if isinstance(e, Log)] == ["warning"]
    assert "merged into the full-precision base" in events[0].message


def test_an_fsdp_rank_but_the_first_builds_the_base_without_reading_its_weights(tmp_path: Path) -> None:
    """``weights=False``: the base's modules with nothing in them (meta: no RAM, no read of the safetensors) and the
    run's LoRA weights real, float32, ready for rank 0's values (core.train.distributed.send_base); the same
    parameters, in the same dtypes and order, as the model the first rank loads."""
    import torch

    from tests.checkpoints import tiny_random_checkpoint
    from tuillm.core.train.model import lora_model
    from tuillm.core.train.options import TrainConfig

    folder = tiny_random_checkpoint("qwen2", tmp_path / "tiny")
    config = TrainConfig(base=str(folder), data=["unused.jsonl"], output=str(tmp_path / "o"), rank=4)
    loaded = lora_model(config, folder, "cpu", "bfloat16", lambda event: None)
    empty = lora_model(config, folder, "cpu", "bfloat16", lambda event: None, weights=False)
    shapes = [(name, p.shape, p.dtype, p.requires_grad) for name, p in loaded.named_parameters()]
    assert [(name, p.shape, p.dtype, p.requires_grad) for name, p in empty.named_parameters()] == shapes
    trained = [p for p in empty.parameters() if p.requires_grad]
    assert trained and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in trained)
    assert all(p.is_meta for p in empty.parameters() if not p.requires_grad)
    assert all(b.is_meta for b in empty.buffers())


def _tokenizer_copy(folder: Path, eos: object) -> Path:
    """The demo checkpoint's tokenizer files in ``folder``, with ``eos`` as the end token of its config."""
    from tests.checkpoints import demo_hf_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    source = demo_hf_checkpoint()
    shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((source / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": eos}))
    return folder


def test_a_copy_must_end_text_with_the_gguf_end_token(tmp_path: Path, demo_gguf: Path) -> None:
    """transformers 5.17 rebuilt the demo's tokenizer with <|im_start|> as its end token (the GGUF says id 2,
    <|im_end|>); such a copy is caught. Where a side does not say (no files, an unknown token), it is not."""
    assert same_end_token(demo_gguf, _tokenizer_copy(tmp_path / "a", "<|im_end|>"))
    assert same_end_token(demo_gguf, _tokenizer_copy(tmp_path / "b", {"content": "<|im_end|>", "special": True}))
    assert not same_end_token(demo_gguf, _tokenizer_copy(tmp_path / "c", "<|im_start|>"))
    assert not same_end_token(demo_gguf, _tokenizer_copy(tmp_path / "d", {"content": "<|endoftext|>"}))
    assert same_end_token(demo_gguf, _tokenizer_copy(tmp_path / "e", "<|not a token|>"))
    assert same_end_token(demo_gguf, tmp_path / "missing")


@pytest.mark.slow
def test_a_cached_copy_with_another_end_token_is_made_again(demo_gguf: Path) -> None:
    """A copy left by such a transformers is removed and dequantized again, with a warning."""
    from tests.checkpoints import demo_hf_checkpoint
    from tuillm.core.events import Log
    from tuillm.core.train.base import dequantized_folder

    target = _tokenizer_copy(dequantized_folder(demo_gguf), "<|im_start|>")
    shutil.copy(demo_hf_checkpoint() / "config.json", target / "config.json")
    (target / "model.safetensors").symlink_to(demo_hf_checkpoint() / "model.safetensors")
    logs: list[Log] = []
    assert base_folder(demo_gguf, emit=lambda e: logs.append(e) if isinstance(e, Log) else None) == target
    assert any(log.level == "warning" and "another end token than the file" in log.message for log in logs)
    assert not (target / "model.safetensors").is_symlink()
    assert json.loads((target / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"
    assert same_end_token(demo_gguf, target)
