"""A model loaded for embeddings, and a model's vocabulary alone: ``llama_cpp.Llama`` behind typed wrappers.

The server's embeddings and its /tokenize and /detokenize use these, never a ``Llama``'s methods themselves: what
llama-cpp-python calls, and how (its tokenize's flags, its embed's batching, the whole pieces its detokenize cuts
short), is known here only. Neither is thread-safe: one thread uses each at a time.

``EmbeddingModel.embed`` takes token ids, not text: llama-cpp-python's ``Llama.embed`` tokenizes text itself and
has no way in for tokens (OpenAI's API takes token arrays), so its batching is done here the same way, over the
same batch and context (``test_embedding`` checks the vectors are its own). llama.cpp computes the output layer
(the logits) for every token of an embedding context as well: the graph always ends in it and every token is an
output there, and this llama.cpp has no flag to leave it out (``llama_batch_ext_set_output_embd`` is, its header
says, the same as asking for logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.llama.loader import quiet_llama
from tuillm.core.llama.model import token_piece
from tuillm.core.llama.options import LoadOptions

POOLING_MEAN = 1  # llama.cpp's LLAMA_POOLING_TYPE_MEAN: a causal chat model (the demo) has no pooling of its own
_POOLINGS = (1, 2, 3)  # MEAN, CLS, LAST: a file's own is kept when it is one of these (NONE gives no one vector)
# A vocabulary-only Llama still gets a context from llama-cpp-python: the smallest it takes.
_VOCAB_CTX = 16


class NotLoaded(TuillmError):
    """llama.cpp could not load the file: the message says so with llama-cpp-python's reason; the caller puts the
    model's name before it."""


def pooling_of(declared: object) -> int:
    """The pooling an embedding is taken with: the file's ``{arch}.pooling_type`` when llama.cpp pools with it into
    one vector, else the mean of the tokens' states."""
    return declared if isinstance(declared, int) and declared in _POOLINGS else POOLING_MEAN


class EmbeddingModel:
    """A model in llama.cpp's embedding context (``embedding=True``), each input pooled into one raw vector."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm  # llama_cpp.Llama(embedding=True)
        self.n_vocab = int(llm.n_vocab())

    @classmethod
    def load(cls, path: Path, options: LoadOptions, pooling: object = None) -> EmbeddingModel:
        """``path`` with ``options`` (``n_gpu_layers`` None: 0; ``n_threads`` None: llama-cpp-python's), every input
        decoded in one batch of up to ``options.n_ctx`` tokens (a sequence split over batches would be pooled over its
        last part only); ``pooling``: the file's ``{arch}.pooling_type`` (``pooling_of``). A ``NotLoaded`` when
        llama.cpp refuses."""
        n_ctx = options.n_ctx
        try:
            return cls(quiet_llama(str(path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                                   pooling_type=pooling_of(pooling),
                                   n_gpu_layers=0 if options.n_gpu_layers is None else options.n_gpu_layers,
                                   n_threads=options.n_threads, flash_attn=options.flash_attn,
                                   use_mmap=options.use_mmap))
        except (ValueError, RuntimeError, OSError) as exc:
            raise NotLoaded(f"llama.cpp could not load it for embeddings ({exc})") from None

    def tokenize(self, text: str) -> list[int]:
        """``text``'s tokens as an embedding takes them (as llama-cpp-python's embed() tokenizes: BOS where the model
        wants it, special tokens' text as text)."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        """Each token sequence's pooled vector (not normalized), in order. The caller checks the sequences: each of
        1 to ``n_ctx`` ids, every id from 0 to ``n_vocab - 1`` (llama.cpp reads past its tables otherwise)."""
        llm = self._llm
        budget, most = llm.n_batch, llm.context_params.n_seq_max
        vectors: list[list[float]] = []
        group: list[Sequence[int]] = []
        used = 0
        for tokens in inputs:  # as many sequences in one decode as fit (llama-cpp-python's embed() batching)
            if not 0 < len(tokens) <= budget:
                raise ValueError(f"a sequence of {len(tokens)} tokens: 1 to {budget} are embedded")
            if group and (used + len(tokens) > budget or len(group) >= most):
                vectors.extend(self._decode(group))
                group, used = [], 0
            group.append(tokens)
            used += len(tokens)
        if group:
            vectors.extend(self._decode(group))
        return vectors

    def _decode(self, group: list[Sequence[int]]) -> list[list[float]]:
        """One decode of ``group``'s sequences (sequence ``i`` in llama.cpp's seq ``i``), their pooled vectors."""
        import llama_cpp

        llm = self._llm
        batch, context, width = llm._batch, llm._ctx, llm.n_embd()
        batch.reset()
        for seq, tokens in enumerate(group):
            batch.add_sequence(list(tokens), seq, True)  # every token an output: llama.cpp pools over them
        context.kv_cache_clear()
        try:
            context.decode(batch)
            pooled = [llama_cpp.llama_get_embeddings_seq(context.ctx, seq) for seq in range(len(group))]
            if not all(pooled):
                raise RuntimeError("llama.cpp gave no pooled embedding")
            return [vector[:width] for vector in pooled]
        finally:
            batch.reset()
            context.kv_cache_clear()

    def close(self) -> None:
        """Frees the context and weights now instead of whenever the GC runs."""
        self._llm.close()


class Vocabulary:
    """A model's vocabulary (llama.cpp's, without the weights): text to tokens and back."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm  # llama_cpp.Llama(vocab_only=True)
        self._vocab = llm._model.vocab  # llama.cpp's own: token pieces of any length
        self.n_vocab = int(llm.n_vocab())

    @classmethod
    def open(cls, path: Path) -> Vocabulary:
        """The vocabulary of the GGUF at ``path`` (no weights read); a ``NotLoaded`` when llama.cpp cannot read it."""
        try:
            return cls(quiet_llama(str(path), vocab_only=True, n_ctx=_VOCAB_CTX, n_batch=_VOCAB_CTX))
        except (ValueError, RuntimeError, OSError) as exc:
            raise NotLoaded(f"llama.cpp cannot read its vocabulary ({exc})") from None

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """``text``'s tokens; ``add_special``: BOS (and EOS) where the vocabulary says the model wants them;
        ``parse_special``: special tokens' text (``<|im_start|>``) read as those tokens."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def piece(self, token: int) -> bytes:
        """``token``'s bytes, whole (a piece may split a character), a special token as its text. The id must be in
        the vocabulary (llama.cpp reads past its tables otherwise)."""
        return token_piece(self._vocab, token, True)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The bytes of ``tokens``' pieces, one after the other."""
        return b"".join(self.piece(token) for token in tokens)

    def close(self) -> None:
        self._llm.close()
