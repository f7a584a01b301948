"""Byte-level BPE pre-tokenizers, identified as llama.cpp's converter identifies them: the sha256 of the ids the
tokenizer gives a check text, looked up in the reference's table.

SmolLM2 (the demo) is a real tokenizer in the table. The other cases keep the demo vocabulary and merges and swap
only the pre_tokenizer of tokenizer.json for a real family's (Llama 3, Qwen2): their hashes are not in the
table (the vocabulary is not the family's), so they are refused as the reference refuses them, and, with the
hash registered under the family's name, llama.cpp's pre-tokenizer of that name must split text as HF does."""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import gguf
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tests.convert.texts import TOKENIZER_MIX, TOKENIZER_TEXTS
from tuillm.convert import pretokenizers
from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import convert_hf
from tuillm.convert.pretokenizers import CHKTXT, check_hash
from tuillm.convert.vocab import read_vocab
from tuillm.convert.vocab_bpe import merge_strings
from tuillm.core.llama.logits import llama_tokenize

# The Split regexes of the Llama 3 and Qwen2 tokenizer.json files.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _split(regex: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


# family name -> (pre_tokenizer, normalizer)
VARIANTS = {
    "llama-bpe": (_split(LLAMA3_REGEX), None),
    "qwen2": (_split(QWEN2_REGEX), {"type": "NFC"}),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny-bpe"))


def _variant(base: Path, family: str, folder: Path) -> dict:
    """``base`` with the tokenizer.json of ``family``'s layout, in ``folder``; returns the tokenizer.json."""
    tj = json.loads((base / "tokenizer.json").read_text())
    tj["pre_tokenizer"], tj["normalizer"] = VARIANTS[family]
    folder.mkdir()
    for f in base.iterdir():
        if f.name != "tokenizer.json":
            (folder / f.name).symlink_to(f)
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    return tj


def _full_hash(tj: dict) -> str:
    """The reference's hash, from the whole tokenizer (what AutoTokenizer(...).encode(chktxt) gives)."""
    from tokenizers import Tokenizer

    return sha256(str(Tokenizer.from_str(json.dumps(tj)).encode(CHKTXT).ids).encode()).hexdigest()


def test_smollm2_is_identified_as_smollm(base: Path, tmp_path: Path) -> None:
    # Its tokenizer.json spells a plain GPT-2 ByteLevel pre-tokenizer; the reference names it by its output.
    assert json.loads((base / "tokenizer.json").read_text())["pre_tokenizer"]["type"] == "ByteLevel"
    assert read_vocab(base, 49152).pre == "smollm"
    out = convert_hf(base, tmp_path / "smollm.gguf", "f16")
    assert gguf.GGUFReader(out).fields["tokenizer.ggml.pre"].contents() == "smollm"


@pytest.mark.parametrize("family", [None, *VARIANTS])
def test_check_hash_is_the_whole_tokenizers(family: str | None, base: Path, tmp_path: Path) -> None:
    """The hash is taken on a tokenizer reduced to the tokens the check text can use (fast): it must be the
    reference's hash of the whole tokenizer."""
    tj = json.loads((base / "tokenizer.json").read_text()) if family is None else \
        _variant(base, family, tmp_path / "ckpt")
    merges = merge_strings(Path("tokenizer.json"), tj["model"]["merges"])
    assert check_hash(tj, merges) == _full_hash(tj)


def test_check_hash_counts_the_special_tokens_the_tokenizer_adds(base: Path, tmp_path: Path) -> None:
    """As the reference's ``AutoTokenizer.encode(chktxt)``: a BOS added by the post-processor (Llama 3 adds
    <|begin_of_text|>) is part of the hashed ids, and the reduced tokenizer keeps it."""
    tj = _variant(base, "llama-bpe", tmp_path / "ckpt")
    merges = merge_strings(Path("tokenizer.json"), tj["model"]["merges"])
    plain = check_hash(tj, merges)
    bos = next(a for a in tj["added_tokens"] if a["content"] == "<|im_start|>")
    name, a, b = bos["content"], {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}
    tj["post_processor"] = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": name, "type_id": 0}}, a],
                            "pair": [a, b],
                            "special_tokens": {name: {"id": name, "ids": [bos["id"]], "tokens": [name]}}}
    assert check_hash(tj, merges) == _full_hash(tj) != plain


@pytest.mark.parametrize("family", list(VARIANTS))
def test_unknown_pre_tokenizer_is_refused_with_its_hash(family: str, base: Path, tmp_path: Path) -> None:
    tj = _variant(base, family, tmp_path / "ckpt")
    digest = _full_hash(tj)
    assert digest not in pretokenizers.PRE_TOKENIZERS
    with pytest.raises(ConvertError, match=f"unknown BPE pre-tokenizer \\(check hash {digest}\\)"):
        convert_hf(tmp_path / "ckpt", tmp_path / "t.gguf", "f16")
    assert not (tmp_path / "t.gguf").exists()


def test_unknown_pre_tokenizer_is_one_line_from_the_cli(base: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tuillm.tui.cli import main

    digest = _full_hash(_variant(base, "qwen2", tmp_path / "ckpt"))
    assert main(["convert", str(tmp_path / "ckpt"), "-o", str(tmp_path / "t.gguf"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"check hash {digest}" in err and "convert_hf_to_gguf.py" in err
    assert not list(tmp_path.glob("*.gguf*"))


@pytest.mark.parametrize("family", list(VARIANTS))
def test_pre_tokenizer_matches_hf(family: str, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenizers import Tokenizer

    tj = _variant(base, family, tmp_path / "ckpt")
    monkeypatch.setitem(pretokenizers.PRE_TOKENIZERS, _full_hash(tj), family)
    out = convert_hf(tmp_path / "ckpt", tmp_path / "t.gguf", "f16")
    assert gguf.GGUFReader(out).fields["tokenizer.ggml.pre"].contents() == family
    hf = Tokenizer.from_str(json.dumps(tj))
    for text in (TOKENIZER_MIX, *TOKENIZER_TEXTS):
        assert llama_tokenize(out, text) == hf.encode(text, add_special_tokens=False).ids, text


def test_table_holds_the_names_our_architectures_use() -> None:
    names = set(pretokenizers.PRE_TOKENIZERS.values())
    assert {"gpt-2", "llama-bpe", "qwen2", "smollm", "tekken", "qwen35"} <= names
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in pretokenizers.PRE_TOKENIZERS)
