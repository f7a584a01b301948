"""``tuillm merge`` and ``export-lora`` through the real binary, with adapters whose files were tampered with: one
line and exit 1, nothing written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.tui.cli.test_train import one_line_error, tuillm


@pytest.fixture(scope="module")
def tiny_and_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.convert.test_lora_to_gguf import make_adapter

    root = tmp_path_factory.mktemp("tiny")
    base = tiny_random_checkpoint("llama", root / "llama")
    return base, make_adapter(base, root / "adapter")


def test_lora_weights_of_an_integer_dtype_are_refused(tiny_and_adapter: tuple[Path, Path], tmp_path: Path) -> None:
    """float32 bytes declared int32 were read as huge numbers: merge wrote a GGUF of garbage with exit 0, and
    export-lora one too, after a numpy overflow warning on stderr."""
    import shutil

    base, adapter = tiny_and_adapter
    bad = Path(shutil.copytree(adapter, tmp_path / "adapter"))
    weights = bad / "adapter_model.safetensors"
    raw = weights.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for name, entry in header.items():
        if name != "__metadata__":
            entry["dtype"] = "I32"  # the same width: the same bytes, other numbers
    text = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    first = sorted(k for k in header if k != "__metadata__")[0]
    line = f"tuillm: {weights}: tensor '{first}' is I32, not a float type (LoRA weights are F32, F16, BF16 or F64)"
    assert one_line_error(tuillm("merge", str(base), str(bad), "-o", str(tmp_path / "m.gguf"), "-q")) == line
    assert one_line_error(tuillm("export-lora", str(bad), "--base", str(base), "-o", str(tmp_path / "a.gguf"),
                                 "-q")) == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"num_hidden_layers": 3}, "model.layers.2.input_layernorm.weight is missing (and 8 more)"),
    ({"intermediate_size": 256}, "model.layers.0.mlp.down_proj.weight is of another shape (and 5 more)"),
])
def test_a_base_whose_config_describes_other_weights_is_refused(tiny_and_adapter: tuple[Path, Path], tmp_path: Path,
                                                                change: dict, problem: str) -> None:
    """A config.json of one layer more than the safetensors hold: transformers filled the layer with random numbers,
    and train and merge went on with exit 0. Of other widths: merge ended in a crash report (RuntimeError)."""
    import shutil

    base, adapter = tiny_and_adapter
    odd = Path(shutil.copytree(base, tmp_path / "base"))
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, **change}))
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n{"text": "world"}\n')
    line = (f"tuillm: {odd}: its weights do not fit its config.json: {problem}; transformers would fill them with "
            "random numbers")
    out = tuillm("train", str(odd), "--data", str(data), "-o", str(tmp_path / "out"), "--max-steps", "1",
                 "--rank", "4", "-q")
    assert one_line_error(out) == line
    assert one_line_error(tuillm("merge", str(odd), str(adapter), "-o", str(tmp_path / "m.gguf"), "-q")) == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "d.jsonl"]
