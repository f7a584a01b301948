"""Every supported architecture: llama.cpp's tokenization of the converted GGUF equals transformers' on texts with
digits, code, emoji, CJK, contractions and whitespace runs, with the tokenizer kind that architecture ships.

- llama: SmolLM2's own tokenizer (the demo's): byte-level BPE, identified as ``smollm`` by its check hash.
- qwen2, qwen3: a Qwen2-layout byte-level BPE (its Split regex and NFC normalizer over the demo vocabulary); the
  hash of a vocabulary that is not Qwen's own is registered under "qwen2" for the test (test_bpe_pre.py shows it
  is otherwise refused).
- mistral, phi3, gemma2, gemma3: byte-fallback SentencePiece-style BPE in tokenizer.json alone, in each family's
  layout (tests/checkpoints.py ``spm_bpe_tokenizer``): converted as llama.cpp's SentencePiece ("llama") model.

The gemma3 byte-fallback checkpoint is also run in both: its logits on the tokenized text must match.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.checkpoints import spm_bpe_special_ids, spm_bpe_tokenizer, tiny_random_checkpoint
from tests.convert.test_bpe_pre import QWEN2_REGEX, _split
from tests.convert.texts import HELD_OUT, TOKENIZER_MIX, TOKENIZER_TEXTS
from tuillm.convert import pretokenizers
from tuillm.convert.hf_to_gguf import convert_hf
from tuillm.convert.pretokenizers import CHKTXT
from tuillm.core.conversion.quality import compare, hf_logits
from tuillm.core.llama.loader import quiet_llama
from tuillm.core.llama.logits import llama_logits

TEXTS = (TOKENIZER_MIX, *TOKENIZER_TEXTS, CHKTXT, HELD_OUT[:500])
# architecture -> the tokenizer it is tested with ("demo", "qwen2" or a spm_bpe_tokenizer style)
CASES = {"llama": "demo", "qwen2": "qwen2", "qwen3": "qwen2", "mistral": "metaspace", "phi3": "llama",
         "gemma2": "gemma", "gemma3": "gemma"}
SPM_VOCAB = 700  # the byte-fallback tokenizers' size; their models get a few more embedding rows (padding)


def _checkpoint(arch: str, kind: str, folder: Path) -> Path:
    if kind in ("demo", "qwen2"):
        tiny_random_checkpoint(arch, folder)
        if kind == "qwen2":
            tj = json.loads((folder / "tokenizer.json").read_text())
            tj["pre_tokenizer"], tj["normalizer"] = _split(QWEN2_REGEX), {"type": "NFC"}
            (folder / "tokenizer.json").write_text(json.dumps(tj))
        return folder
    overrides = {"vocab_size": SPM_VOCAB + 4, **spm_bpe_special_ids(kind)}
    return tiny_random_checkpoint(arch, folder, tokenizer=spm_bpe_tokenizer(kind, SPM_VOCAB), overrides=overrides)


def _llama_ids(path: Path, text: str) -> list[int]:
    """llama.cpp's tokenization with the special tokens its GGUF says to add (BOS), as an app would call it."""
    llm = quiet_llama(str(path), vocab_only=True)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    finally:
        llm.close()


@pytest.fixture(scope="module", params=list(CASES))
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from tokenizers import Tokenizer

    arch, kind = request.param, CASES[request.param]
    # Not named after the architecture: llama.cpp treats a model named "phi3" as Phi-3's own vocabulary.
    folder = _checkpoint(arch, kind, tmp_path_factory.mktemp(f"tok-{kind}") / "ckpt")
    tj = json.loads((folder / "tokenizer.json").read_text())
    patch = pytest.MonkeyPatch()
    if kind == "qwen2":
        digest = pretokenizers.check_hash(tj, [" ".join(m) for m in tj["model"]["merges"]])
        patch.setitem(pretokenizers.PRE_TOKENIZERS, digest, "qwen2")
    try:
        out = convert_hf(folder, folder.parent / "out.gguf", "f32")
    finally:
        patch.undo()
    return arch, kind, folder, out, Tokenizer.from_str(json.dumps(tj))


def test_tokenization_matches_transformers(converted) -> None:
    from transformers import AutoTokenizer

    arch, kind, folder, out, _ = converted
    hf = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert _llama_ids(out, text) == hf(text)["input_ids"], (arch, text)


def test_vocabulary_keys(converted) -> None:
    """What the GGUF says about the vocabulary: the model kind, the pre-tokenizer, the token kinds, BOS."""
    arch, kind, folder, out, tok = converted
    fields = gguf.GGUFReader(out).fields
    types = list(fields["tokenizer.ggml.token_type"].contents())
    if kind in ("demo", "qwen2"):
        assert fields["tokenizer.ggml.model"].contents() == "gpt2"
        assert fields["tokenizer.ggml.pre"].contents() == ("smollm" if kind == "demo" else "qwen2")
        assert len(fields["tokenizer.ggml.merges"].contents()) == len(json.loads(tok.to_str())["model"]["merges"])
        assert fields["tokenizer.ggml.add_bos_token"].contents() is False
        return
    ids = spm_bpe_special_ids(kind)
    assert fields["tokenizer.ggml.model"].contents() == "llama"
    assert fields["tokenizer.ggml.pre"].contents() == "default"
    assert fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert fields["tokenizer.ggml.bos_token_id"].contents() == ids["bos_token_id"]
    assert fields["tokenizer.ggml.add_space_prefix"].contents() is (kind != "gemma")
    assert "tokenizer.ggml.merges" not in fields  # llama.cpp's SentencePiece model merges by score
    assert types[tok.token_to_id("<0x41>")] == gguf.TokenType.BYTE
    assert types[ids["bos_token_id"]] == gguf.TokenType.CONTROL
    assert types[tok.token_to_id("▁the")] == gguf.TokenType.NORMAL
    assert types[SPM_VOCAB:] == [gguf.TokenType.UNUSED] * 4
    scores = fields["tokenizer.ggml.scores"].contents()
    # The earlier merge makes the higher score: llama.cpp's SentencePiece tokenizer merges in the BPE order.
    assert scores[tok.token_to_id("▁t")] > scores[tok.token_to_id("▁the")]


@pytest.mark.parametrize("converted", ["gemma3"], indirect=True)
def test_byte_fallback_logits_match_transformers(converted) -> None:
    """The acceptance case: a gemma3 checkpoint whose tokenizer is byte-fallback BPE with no tokenizer.model
    (test_tiny_parity.py covers every architecture's logits with the demo vocabulary)."""
    arch, kind, folder, out, tok = converted
    ids = tok.encode(TOKENIZER_MIX).ids
    assert ids[0] == spm_bpe_special_ids(kind)["bos_token_id"] and len(ids) > 100
    result = compare(hf_logits(folder, ids), llama_logits(out, ids, threads=1), ids)
    assert result.top1_agreement >= 0.99, result
    assert result.max_abs_diff <= 0.05, result
    assert np.isfinite(result.max_abs_diff)
