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


def test_an_embedding_model_tokenizes_as_llama_cpp_pythons_embed(demo_gguf: Path) -> None:
    model = EmbeddingModel.load(demo_gguf, LoadOptions(n_ctx=64, n_gpu_layers=0))
    vocabulary = Vocabulary.open(demo_gguf)
    try:
        # embed() tokenized with BOS where the model wants it and special tokens' text as text
        assert model.tokenize(SPECIAL) == vocabulary.tokenize(SPECIAL, add_special=True, parse_special=False)
        assert model.n_vocab == vocabulary.n_vocab == 49152
        same, again, other = model.embed([model.tokenize(t) for t in ("Paris", "Paris", "London")])
        assert same == again and same != other and len(same) == 576  # the demo's n_embd
    finally:
        model.close()
        vocabulary.close()


def test_token_embeddings_are_llama_cpp_pythons_own(demo_gguf: Path) -> None:
    """``embed`` over token ids batches as ``Llama.embed`` over text does: the same vectors, exactly, several
    sequences to a decode and several decodes (a 16-token batch takes two or three of these texts)."""
    from tuillm.core.llama.loader import quiet_llama

    texts = ["The capital of France is Paris.", "Bananas are yellow.", "Paris is the capital of France.",
             "A lighthouse keeper", "x"]
    model = EmbeddingModel.load(demo_gguf, LoadOptions(n_ctx=16, n_gpu_layers=0))
    reference = quiet_llama(str(demo_gguf), embedding=True, n_ctx=16, n_batch=16, n_ubatch=16,
                            pooling_type=POOLING_MEAN, n_gpu_layers=0)
    try:
        sequences = [model.tokenize(text) for text in texts]
        assert sum(map(len, sequences)) > 16 and max(map(len, sequences)) <= 16
        assert model.embed(sequences) == reference.embed(texts)
        assert model.embed(sequences[1:2]) == [reference.embed(texts[1])]
    finally:
        model.close()
        reference.close()


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
