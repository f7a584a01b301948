"""SentencePiece vocabularies (tokenizer.model): a small model trained here, through the converter, must split
text in llama.cpp exactly as sentencepiece itself does."""

from __future__ import annotations

import io
import json
from pathlib import Path

import gguf
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.convert.texts import HELD_OUT, TOKENIZER_MIX
from tuillm.convert.hf_to_gguf import convert_hf
from tuillm.core.conversion.quality import REPORT_TEXT
from tuillm.core.llama.logits import llama_tokenize


@pytest.fixture(scope="module")
def spm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    import sentencepiece as spm

    model = io.BytesIO()
    lines = [line for line in (HELD_OUT + REPORT_TEXT).splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=400,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
                                   # As LLM SentencePiece models are trained (llama.cpp does no normalization).
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   split_digits=True, allow_whitespace_only_pieces=True)
    folder = tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny-spm"))
    for name in ("tokenizer.json", "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
         "add_eos_token": False}))
    return folder, spm.SentencePieceProcessor(model_proto=model.getvalue())


def test_spm_tokenization_matches_sentencepiece(spm_checkpoint, tmp_path: Path) -> None:
    folder, sp = spm_checkpoint
    out = convert_hf(folder, tmp_path / "spm.gguf", "f16")
    for text in (HELD_OUT[:400], TOKENIZER_MIX):
        assert llama_tokenize(out, text) == sp.encode(text), text
    reader = gguf.GGUFReader(out)
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert reader.fields["tokenizer.ggml.bos_token_id"].contents() == 1
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert types[0] == gguf.TokenType.UNKNOWN and types[1] == gguf.TokenType.CONTROL
    assert types[3] == gguf.TokenType.BYTE  # <0x00>, the first byte-fallback piece
    assert types[-1] == gguf.TokenType.UNUSED  # padding up to the embedding rows
