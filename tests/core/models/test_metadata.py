from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.ggufs import write_tiny_gguf
from tuillm.core.errors import ModelFileError
from tuillm.core.models.metadata import format_params, read_info
from tuillm.core.text import format_bytes


def test_demo_model_metadata(demo_gguf: Path) -> None:
    info = read_info(demo_gguf)
    assert info.format == "gguf"
    assert info.arch == "llama"
    assert 120e6 < info.params < 150e6  # SmolLM2-135M
    assert info.file_type == "Q4_1"
    assert info.n_layers == 30
    assert info.n_embd == 576
    assert (info.n_head, info.n_head_kv) == (9, 3)
    assert info.vocab_size == 49152
    assert info.context_length == 8192
    assert info.chat_template and "im_start" in info.chat_template
    assert info.size_bytes == demo_gguf.stat().st_size
    assert len(info.layer_bytes) == 30 and all(b > 0 for b in info.layer_bytes)
    assert sum(info.layer_bytes) + info.other_bytes < info.size_bytes


def test_written_gguf(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=3, n_embd=64, n_head=4, n_head_kv=2, vocab=100)
    info = read_info(path)
    assert (info.arch, info.name, info.file_type) == ("llama", "tiny", "F16")
    assert (info.n_layers, info.n_embd, info.n_head, info.n_head_kv, info.vocab_size) == (3, 64, 4, 2, 100)
    per_layer = 64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3
    assert info.params == 100 * 64 + 64 + 3 * (per_layer + 128)
    assert info.head_dim_k == 16
    assert info.chat_template == "{{ messages[0]['content'] }}"
    assert info.kind == "model"


def _hf_folder(folder: Path, *, config: dict | None = None) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = config or {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
                     "vocab_size": 50, "max_position_embeddings": 1024}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ bos_token }}"}))
    tensors = {"model.embed_tokens.weight": np.zeros((50, 32), np.float16)}
    for i in range(2):
        tensors[f"model.layers.{i}.self_attn.q_proj.weight"] = np.zeros((32, 32), np.float16)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_hf_folder(tmp_path: Path) -> None:
    info = read_info(_hf_folder(tmp_path / "m"))
    assert (info.format, info.arch, info.file_type) == ("hf", "llama", "F16")
    assert info.params == 50 * 32 + 2 * 32 * 32
    assert (info.n_layers, info.n_head, info.n_head_kv, info.context_length) == (2, 4, 2, 1024)
    assert info.chat_template == "{{ bos_token }}"
    assert info.layer_bytes == (2048, 2048)


def test_hf_text_config_is_read(tmp_path: Path) -> None:
    cfg = {"model_type": "gemma3", "text_config": {"hidden_size": 32, "num_attention_heads": 4,
                                                  "num_hidden_layers": 2, "max_position_embeddings": 512}}
    info = read_info(_hf_folder(tmp_path / "g", config=cfg))
    assert (info.arch, info.n_embd, info.n_layers, info.context_length) == ("gemma3", 32, 2, 512)


# Each bad input gives a ModelFileError naming the file and the problem.
def _truncated(tmp_path: Path, demo: Path) -> Path:
    p = tmp_path / "cut.gguf"
    p.write_bytes(demo.read_bytes()[: 5_000_000])
    return p


def _header_only(tmp_path: Path, demo: Path) -> Path:
    p = tmp_path / "head.gguf"
    p.write_bytes(demo.read_bytes()[:100])
    return p


def _text_file(tmp_path: Path, demo: Path) -> Path:
    p = tmp_path / "notes.gguf"
    p.write_text("these are my notes, not a model\n")
    return p


def _future_version(tmp_path: Path, demo: Path) -> Path:
    p = tmp_path / "v9.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<I", 9) + demo.read_bytes()[8:4096])
    return p


def _folder_without_config(tmp_path: Path, demo: Path) -> Path:
    p = tmp_path / "folder"
    p.mkdir()
    (p / "README.md").write_text("hi")
    return p


@pytest.mark.parametrize(("make", "expected"), [
    (lambda t, d: t / "missing.gguf", "no such file"),
    (_truncated, "truncated"),
    (_header_only, "GGUF"),
    (_text_file, "not a GGUF file"),
    (_future_version, "unsupported GGUF version 9"),
    (_folder_without_config, "no config.json"),
])
def test_bad_inputs(tmp_path: Path, demo_gguf: Path, make, expected: str) -> None:
    path = make(tmp_path, demo_gguf)
    with pytest.raises(ModelFileError) as err:
        read_info(path)
    assert str(path) in str(err.value)
    assert expected in err.value.problem
    assert "\n" not in str(err.value)


def test_folder_with_only_pickles_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not unpickled")
    with pytest.raises(ModelFileError, match="pickled"):
        read_info(folder)


def test_formatting() -> None:
    assert format_params(134_515_008) == "135M"
    assert format_params(7_241_732_096) == "7.2B"
    assert format_params(70_553_706_496) == "71B"
    assert format_bytes(512) == "512 B"
    assert format_bytes(98_362_432) == "94 MiB"
    assert format_bytes(4 * 1024**3) == "4.0 GiB"
