"""core.llama's embedding model and vocabulary on the real demo GGUF: what the server's embeddings and /tokenize
rely on, without the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuillm.core.llama.embedding import POOLING_MEAN, EmbeddingModel, NotLoaded, Vocabulary, pooling_of
from tuillm.core.llama.options import LoadOptions

SPECIAL = "<|im_start|>user\nThe lighthouse keeper<|im_end|>"


@pytest.mark.parametrize(("declared", "pooling"), [(1, 1), (2, 2), (3, 3), (None, POOLING_MEAN),
                                                   (0, POOLING_MEAN), (4, POOLING_MEAN), ("2", POOLING_MEAN)])
def test_pooling_is_the_files_own_when_it_makes_one_vector(declared: object, pooling: int) -> None:
    # NONE (0) gives a vector per token and RANK (4) a score: an embedding is the mean then
    assert pooling_of(declared) == pooling


def test_an_embedding_model_counts_what_it_embeds(demo_gguf: Path) -> None:
    model = EmbeddingModel.load(demo_gguf, LoadOptions(n_ctx=64, n_gpu_layers=0))
    vocabulary = Vocabulary.open(demo_gguf)
    try:
        # embed() tokenizes with BOS where the model wants it and special tokens' text as text
        assert model.count(SPECIAL) == len(vocabulary.tokenize(SPECIAL, add_special=True, parse_special=False))
        same, again, other = model.embed(["Paris", "Paris", "London"])
        assert same == again and same != other and len(same) == 576  # the demo's n_embd
    finally:
        model.close()
        vocabulary.close()


def test_a_vocabulary_tokenizes_as_asked_and_gives_whole_pieces(demo_gguf: Path) -> None:
    vocabulary = Vocabulary.open(demo_gguf)
    try:
        assert vocabulary.n_vocab == 49152
        parsed = vocabulary.tokenize(SPECIAL, add_special=False, parse_special=True)
        assert len(parsed) < len(vocabulary.tokenize(SPECIAL, add_special=False, parse_special=False))
        assert vocabulary.detokenize(parsed) == SPECIAL.encode()  # special tokens come back as their text
        assert vocabulary.piece(parsed[0]) == b"<|im_start|>"
    finally:
        vocabulary.close()


def test_a_file_llama_cpp_refuses_is_not_loaded(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a GGUF file at all")
    with pytest.raises(NotLoaded, match=r"^llama.cpp could not load it for embeddings \("):
        EmbeddingModel.load(bad, LoadOptions(n_ctx=64))
    with pytest.raises(NotLoaded, match=r"^llama.cpp cannot read its vocabulary \("):
        Vocabulary.open(bad)
