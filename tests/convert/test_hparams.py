"""Hyper-parameters: transformers 5 ``rope_parameters`` and the legacy ``rope_theta``/``rope_scaling`` keys."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import convert_hf
from tuillm.convert.hparams import read_hparams, rope_parameters

LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def test_legacy_and_new_rope_keys_agree() -> None:
    legacy = {"rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}
    new = {"rope_parameters": {"rope_type": "linear", "rope_theta": 500000.0, "factor": 2.0}}
    assert rope_parameters(legacy)[0] == {"type": "linear", "factor": 2.0, "rope_type": "linear",
                                          "rope_theta": 500000.0}
    assert rope_parameters(new) == ({"rope_type": "linear", "rope_theta": 500000.0, "factor": 2.0}, {})
    per_layer = {"rope_parameters": {"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}}}
    assert rope_parameters(per_layer) == ({"rope_theta": 1e6}, {"rope_theta": 1e4})
    assert rope_parameters({"rope_theta": 1e6, "rope_local_base_freq": 1e4}) == ({"rope_theta": 1e6},
                                                                                  {"rope_theta": 1e4})


def test_gqa_and_head_dim() -> None:
    hp = read_hparams({"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                       "num_hidden_layers": 2, "intermediate_size": 128}, 1000)
    assert (hp.n_head, hp.n_head_kv, hp.head_dim, hp.vocab_size) == (4, 2, 32, 1000)
    with pytest.raises(ConvertError, match="hyper-parameter"):
        read_hparams({"hidden_size": 64}, 1000)


def test_legacy_config_converts_identically(tmp_path: Path) -> None:
    folder = tiny_random_checkpoint("llama", tmp_path / "new", overrides={"rope_parameters": LLAMA3})
    new = convert_hf(folder, tmp_path / "new.gguf", "f16", name="tiny")
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_parameters"]["rope_type"] == "llama3"
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = params
    (folder / "config.json").write_text(json.dumps(config))
    legacy = convert_hf(folder, tmp_path / "legacy.gguf", "f16", name="tiny")
    assert legacy.read_bytes() == new.read_bytes()
    reader = gguf.GGUFReader(new)
    assert reader.fields["llama.rope.freq_base"].contents() == 500000.0
    assert "rope_freqs.weight" in {t.name for t in reader.tensors}


def test_unsupported_rope_type_is_refused(tmp_path: Path) -> None:
    folder = tiny_random_checkpoint("qwen2", tmp_path / "q")
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "mrope-interleaved", "rope_theta": 1e6}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match="rope type 'mrope-interleaved' is not supported"):
        convert_hf(folder, tmp_path / "q.gguf", "f16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]
