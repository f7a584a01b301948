"""BPE pre-tokenizers: each one the converter recognises must make llama.cpp split text as HF's tokenizer does.

The demo vocabulary and merges are kept and only the pre_tokenizer of tokenizer.json is swapped, so each case is
a real tokenizer.json layout (Llama 3, Qwen2, SmolLM, GPT-2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.convert.texts import TOKENIZER_MIX
from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import convert_hf
from tuillm.convert.vocab import _LLAMA3_REGEX, _QWEN2_REGEX, bpe_pre_name
from tuillm.core.llama.logits import llama_tokenize


def _split(regex: str) -> list[dict]:
    return [{"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
PRE_TOKENIZERS = {
    "llama-bpe": _split(_LLAMA3_REGEX),
    "qwen2": _split(_QWEN2_REGEX),
    "smollm": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL],
    "gpt-2": [BYTE_LEVEL],
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny-bpe"))


@pytest.mark.parametrize("pre", list(PRE_TOKENIZERS))
def test_pre_tokenizer_matches_hf(pre: str, base: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tj = json.loads((base / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": PRE_TOKENIZERS[pre]}
    assert bpe_pre_name(tj) == pre
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for f in base.iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    out = convert_hf(folder, tmp_path / "t.gguf", "f16")
    expected = Tokenizer.from_str(json.dumps(tj)).encode(TOKENIZER_MIX, add_special_tokens=False).ids
    assert llama_tokenize(out, TOKENIZER_MIX) == expected


def test_unknown_pre_tokenizer_is_refused() -> None:
    with pytest.raises(ConvertError, match="unknown BPE pre-tokenizer"):
        bpe_pre_name({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}})
