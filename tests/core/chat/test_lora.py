"""A LoRA adapter GGUF (built here with gguf's writer, in llama.cpp's adapter layout) applied by the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuillm.core.chat.engine import ChatSession
from tuillm.core.errors import ModelFileError
from tuillm.core.llama.options import LoadOptions, Sampling

GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=8)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
RANK = 4


def write_lora(path: Path, n_embd: int, n_layers: int, strength: float) -> Path:
    """A rank-4 adapter on attn_q and attn_output of the first ``n_layers`` layers; ``strength`` 0 makes B
    zero (a no-op adapter)."""
    import gguf

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(RANK))
    for i in range(n_layers):
        for name in ("attn_q", "attn_output"):
            a = rng.standard_normal((RANK, n_embd)).astype(np.float32) * 0.1  # ggml ne = [n_embd, rank]
            b = rng.standard_normal((n_embd, RANK)).astype(np.float32) * strength  # ne = [rank, n_embd]
            writer.add_tensor(f"blk.{i}.{name}.weight.lora_a", a)
            writer.add_tensor(f"blk.{i}.{name}.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lora")
    n_embd, n_layers = 576, 8  # SmolLM2-135M, the first 8 of its 30 layers
    return (write_lora(folder / "noop.gguf", n_embd, n_layers, 0.0),
            write_lora(folder / "strong.gguf", n_embd, n_layers, 1.0))


def answer(path: Path, **options: object) -> str:
    with ChatSession() as s:
        s.load(path, LoadOptions(n_ctx=256, **options)).result()  # type: ignore[arg-type]
        return s.reply(QUESTION, GREEDY).result().text


def test_lora_changes_the_answer_and_its_scale_matters(demo_gguf: Path, adapters: tuple[Path, Path]) -> None:
    noop, strong = adapters
    base = answer(demo_gguf)
    assert answer(demo_gguf, lora_path=str(noop)) == base  # B = 0: the adapter adds nothing
    assert answer(demo_gguf, lora_path=str(strong), lora_scale=0.0) == base  # scale 0: switched off
    assert answer(demo_gguf, lora_path=str(strong), lora_scale=1.0) != base


def test_adapter_for_another_model_is_a_clean_error(demo_gguf: Path, tmp_path: Path) -> None:
    wrong = write_lora(tmp_path / "wrong.gguf", n_embd=64, n_layers=2, strength=1.0)
    with ChatSession() as s, pytest.raises(ModelFileError, match="wrong.gguf: llama.cpp could not apply"):
        s.load(demo_gguf, LoadOptions(n_ctx=256, lora_path=str(wrong))).result()
