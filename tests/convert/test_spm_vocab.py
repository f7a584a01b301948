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


# Byte-fallback BPE in tokenizer.json alone (no tokenizer.model): what llama.cpp's SentencePiece tokenizer cannot
# reproduce is refused in one line; the rest is tested per architecture in test_tokenizer_parity.py.
@pytest.mark.parametrize(("change", "expected"), [
    ({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}},
     "a Metaspace pre-tokenizer that splits words"),
    ({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"},
                                                         {"type": "Replace", "pattern": {"String": " "},
                                                          "content": "▁"}]}},
     "byte-fallback BPE with a 'NFKC' normalizer is not supported"),
    ({"normalizer": None, "pre_tokenizer": None}, "byte-fallback BPE with no ' ' -> '▁' replacement is not supported"),
    # Gemma's Split on " " is harmless only after the normalizer has turned the spaces into "▁".
    ({"normalizer": None}, "byte-fallback BPE with a 'Split' pre-tokenizer is not supported"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, "byte-fallback BPE with a 'Whitespace' pre-tokenizer"),
])
def test_byte_fallback_layouts_llama_cpp_cannot_follow_are_refused(change: dict, expected: str,
                                                                    tmp_path: Path) -> None:
    from tests.checkpoints import spm_bpe_tokenizer
    from tuillm.convert.errors import ConvertError
    from tuillm.convert.vocab import read_vocab

    tj = {**json.loads(spm_bpe_tokenizer("gemma")["tokenizer.json"]), **change}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ConvertError, match=f"^{tmp_path / 'tokenizer.json'}: .*{expected}") as err:
        read_vocab(tmp_path, 800)
    assert "\n" not in str(err.value)


def test_byte_fallback_user_defined_token(tmp_path: Path) -> None:
    """A non-special added token ("▁tuillm" in Gemma's normalized text) is user-defined with its "▁" as a space
    (as the reference writes it: llama.cpp matches user-defined tokens in the raw text), and both split alike."""
    from tokenizers import AddedToken, Tokenizer

    from tests.checkpoints import spm_bpe_special_ids, spm_bpe_tokenizer

    files = spm_bpe_tokenizer("gemma")
    tok = Tokenizer.from_str(files["tokenizer.json"])
    tok.add_tokens([AddedToken("▁tuillm", special=False, normalized=True)])
    new_id = tok.token_to_id("▁tuillm")
    files["tokenizer.json"] = tok.to_str()
    folder = tiny_random_checkpoint("gemma2", tmp_path / "ckpt", tokenizer=files,
                                    overrides={"vocab_size": new_id + 1, **spm_bpe_special_ids("gemma")})
    out = convert_hf(folder, tmp_path / "ud.gguf", "f16")
    fields = gguf.GGUFReader(out).fields
    assert fields["tokenizer.ggml.tokens"].contents()[new_id] == " tuillm"
    assert fields["tokenizer.ggml.token_type"].contents()[new_id] == gguf.TokenType.USER_DEFINED
    text = "Run tuillm, then tuillm again: tuillmtuillm."
    ids = tok.encode(text, add_special_tokens=False).ids
    assert new_id in ids
    assert llama_tokenize(out, text) == ids


def test_splitting_metaspace_without_tokens_across_words(tmp_path: Path) -> None:
    """A Metaspace pre-tokenizer that splits at each "▁" (the old default) splits nothing llama.cpp would join
    when no token holds a "▁" past its start: accepted, and both split alike (whitespace runs included)."""
    from tokenizers import Tokenizer

    from tests.checkpoints import spm_bpe_special_ids, spm_bpe_tokenizer
    from tests.convert.texts import TOKENIZER_TEXTS

    files = spm_bpe_tokenizer("metaspace", whitespace_pieces=False)
    tj = json.loads(files["tokenizer.json"])
    assert not [t for t in tj["model"]["vocab"] if "▁" in t[1:]]
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}  # split: default
    files["tokenizer.json"] = json.dumps(tj)
    folder = tiny_random_checkpoint("mistral", tmp_path / "ckpt", tokenizer=files,
                                    overrides={"vocab_size": 704, **spm_bpe_special_ids("metaspace")})
    out = convert_hf(folder, tmp_path / "split.gguf", "f16")
    tok = Tokenizer.from_str(files["tokenizer.json"])
    assert tok.pre_tokenizer.split
    for text in (TOKENIZER_MIX, *TOKENIZER_TEXTS):
        assert llama_tokenize(out, text) == tok.encode(text, add_special_tokens=False).ids, text
