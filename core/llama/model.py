"""One loaded model for generation: ``llama_cpp.Llama`` behind a typed wrapper.

llama-cpp-python leaves part of what a chat engine needs outside its public API: the vocabulary (special-token
texts, the end-of-generation test, token pieces), the raw context (for the abort callback), the evaluated tokens
(for prefix reuse) and a LoRA adapter that failed to apply. They are read here and nowhere else, so a
llama-cpp-python upgrade that moves them is a change to this file only.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuillm.core.errors import ModelFileError, TuillmError
from tuillm.core.llama.abort import StopFlag, abort_hook
from tuillm.core.llama.loader import last_llama_error, log_mark, quiet_llama
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.paths import expand_user


def _kv_cache_type(name: str) -> int:
    import llama_cpp

    types = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
    return types[name]  # LoadOptions only takes KV_TYPES, the keys above


def _llama_kwargs(opts: LoadOptions, lora: Path | None) -> dict[str, Any]:
    import llama_cpp

    from tuillm.core.models.hardware import default_threads

    kv = _kv_cache_type(opts.kv_type)
    return {
        "n_ctx": opts.n_ctx,
        "n_gpu_layers": 0 if opts.n_gpu_layers is None else opts.n_gpu_layers,
        # llama-cpp-python's own default is half the logical CPUs: one thread on a 2-core machine without SMT.
        "n_threads": opts.n_threads if opts.n_threads is not None else default_threads(),
        "n_batch": opts.n_batch,
        "flash_attn": opts.flash_attn,
        "type_k": kv,
        "type_v": kv,
        "use_mmap": opts.use_mmap,
        "seed": opts.seed if opts.seed >= 0 else llama_cpp.LLAMA_DEFAULT_SEED,
        "lora_path": str(lora) if lora else None,
        "lora_scale": opts.lora_scale,
    }


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A sampled token's log-probability under the model (before sampling's penalties and biases), with the most
    likely tokens at that step, most likely first (``Sampling.logprobs`` of them)."""

    piece: bytes  # the token's bytes (a piece may be part of a UTF-8 character)
    logprob: float
    top: tuple[tuple[bytes, float], ...]


@dataclass(frozen=True, slots=True)
class PromptScore:
    """A prompt's tokens under the model: the first token's bytes (nothing comes before it to score it) and each
    later token's ``TokenLogprob``."""

    first: bytes
    entries: tuple[TokenLogprob, ...]


@dataclass(frozen=True, slots=True)
class _Scored:
    """The last scored prompt: its tokens, the alternatives asked and its entries (``LlamaModel.score``)."""

    tokens: tuple[int, ...]
    top: int
    entries: tuple[TokenLogprob, ...]


# Prompt tokens decoded at once when every one's logits are kept: llama.cpp holds a vocabulary of floats for each
# (64 x 128k x 4 bytes = 32 MB for a large vocabulary; a whole 512-token batch would be 256 MB).
SCORE_BATCH = 64


def _biased(pairs: tuple[tuple[int, float], ...]) -> Any:
    """llama-cpp-python's logits processor adding ``pairs``' biases (ids checked against the vocabulary by the
    engine), or None: without one, sampling stays wholly in llama.cpp."""
    if not pairs:
        return None
    import numpy as np
    from llama_cpp import LogitsProcessorList

    ids = np.array([token for token, _ in pairs], dtype=np.intp)
    biases = np.array([bias for _, bias in pairs], dtype=np.float32)

    def add(_input_ids: Any, scores: Any) -> Any:
        # llama.cpp hands the first sampler every logit in token order, so a token's id indexes its logit.
        scores[ids] += biases
        return scores

    return LogitsProcessorList([add])


def _grammar(gbnf: str | None, vocab: Any) -> Any:
    """A fresh ``LlamaGrammar`` (it keeps its parse state) for one reply; a grammar llama.cpp will not parse is a
    ``TuillmError``. llama-cpp-python hands the text to llama.cpp unchecked, and a grammar llama.cpp's parser refuses
    (``root ::=`` with nothing after it: a schema's empty enum) gives a null sampler it then uses: a segfault. So
    the grammar is parsed by llama.cpp here first, against the model's ``vocab``, and the null answer refused."""
    if gbnf is None:
        return None
    import llama_cpp
    from llama_cpp import LlamaGrammar

    try:
        grammar = LlamaGrammar.from_string(gbnf, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise TuillmError(f"the grammar is not valid ({exc})") from None
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), grammar._root.encode("utf-8"))
    if not sampler:  # llama.cpp prints its reason on stderr, not to its log: only the kinds can be told
        raise TuillmError("the grammar is not valid (llama.cpp could not parse it: a syntax error, an undefined "
                          "rule, no root rule, left recursion, or a rule with nothing to match such as an empty "
                          "enum or type list)")
    llama_cpp.llama_sampler_free(sampler)
    return grammar


class DecodeFailed(TuillmError):
    """llama.cpp failed while it decoded a reply's tokens: the machine's or the model's fault, not the request's."""


def token_piece(vocab: Any, token: int, special: bool) -> bytes:
    """The bytes of ``token`` in llama.cpp's ``vocab``, whole: llama-cpp-python's own detokenize cuts a piece at 32
    bytes."""
    import llama_cpp

    size = 64
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
    if n < 0:  # the piece is longer than the buffer: llama.cpp says how long
        size = -n
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
    return buf.raw[: max(n, 0)]


class LlamaModel:
    """A model with its context (KV cache). Not thread-safe: one thread uses it (the chat session's worker)."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        model = llm._model
        bos_id, eos_id = model.token_bos(), model.token_eos()
        self.bos_text: str = model.token_get_text(bos_id) if bos_id >= 0 else ""
        self.eos_text: str = model.token_get_text(eos_id) if eos_id >= 0 else ""
        self.add_bos = bool(model.add_bos_token())  # the model wants BOS in front of a prompt
        self._added_bos = bos_id if self.add_bos else -1  # tokenize puts it there: not part of a prompt's text
        self.metadata: dict[str, str] = dict(llm.metadata)
        self.n_ctx = int(llm.n_ctx())  # what llama.cpp made of the n_ctx asked for
        self._vocab = model.vocab
        self._scored: _Scored | None = None

    @classmethod
    def load(cls, path: Path, opts: LoadOptions) -> LlamaModel:
        """Loads ``path`` with ``opts`` as given (``n_gpu_layers`` already decided; None is 0).

        Failures are a ``ModelFileError`` naming the model, or the adapter, with llama.cpp's own logged reason.
        """
        from tuillm.convert.gguf_header import GGUFHeaderError, LlamaLimitError, read_gguf_header

        lora = expand_user(opts.lora_path) if opts.lora_path else None
        # llama.cpp aborts the process (GGML_ASSERT) on some metadata (4000 layers, an unknown rope scaling, ...):
        # the files are checked first, so such a file is a ModelFileError naming it and the key. A file llama.cpp
        # refuses on its own (not GGUF, truncated) is left to it: its reason is reported below.
        for file in (path, lora) if lora is not None else (path,):
            try:
                read_gguf_header(file)
            except LlamaLimitError as exc:
                raise ModelFileError(file, str(exc)) from None
            except (GGUFHeaderError, OSError):
                pass
        mark = log_mark()  # so last_llama_error() speaks of this load
        try:
            llm = quiet_llama(str(path), **_llama_kwargs(opts, lora))
        except (ValueError, RuntimeError, OSError) as exc:
            detail = last_llama_error(mark) or str(exc)
            if lora is not None and "lora" in str(exc).lower():
                raise ModelFileError(lora, f"llama.cpp could not apply this adapter ({detail})") from None
            raise ModelFileError(path, f"llama.cpp could not load it ({detail})") from None
        if lora is not None and not llm._lora_adapter:
            # llama-cpp-python tests the returned pointer against None, but a failed init returns a NULL ctypes
            # pointer, so a wrong adapter slips through. Clear it so close() does not free NULL.
            llm._lora_adapter = None
            llm.close()
            raise ModelFileError(lora, f"llama.cpp could not apply this adapter ({last_llama_error(mark)})")
        return cls(llm)

    # --- the context -------------------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Tokens in the KV cache now."""
        return int(self._llm.n_tokens)

    @property
    def n_vocab(self) -> int:
        return int(self._llm.n_vocab())

    @property
    def prompt_tokens_evaluated(self) -> int:
        """llama.cpp's own count of prompt tokens decoded in batches since the load (its perf counters)."""
        import llama_cpp

        return int(llama_cpp.llama_perf_context(self._llm._ctx.ctx).n_p_eval)

    def cached_prefix(self, tokens: list[int]) -> int:
        """Prompt tokens ``generate`` will keep from the KV cache (mirrors ``Llama.generate``'s prefix match)."""
        n_past = self.n_tokens
        if n_past == 0:
            return 0
        import numpy as np

        ids = self._llm.input_ids
        m = min(n_past, len(tokens))
        differs = np.flatnonzero(ids[:m] != np.asarray(tokens[:m], dtype=ids.dtype))
        prefix = int(differs[0]) if differs.size else m
        if prefix == len(tokens):
            # The whole prompt is cached: generate replays its last token to get fresh logits.
            return prefix - 1 if prefix > 0 else 0
        return prefix

    def reset(self) -> None:
        """Forget the evaluated tokens: the next prompt is evaluated in full."""
        self._llm.reset()

    def set_seed(self, seed: int) -> None:
        self._llm.set_seed(seed)

    def close(self) -> None:
        """Frees the context, KV cache and weights now instead of whenever the GC runs."""
        self._llm.close()

    # --- tokens ------------------------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """``text``'s tokens, special tokens (a template's markers) included."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def is_eog(self, token: int) -> bool:
        """An end-of-generation token (EOS, end of turn)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token as text (a piece may split a character). Special tokens render as nothing, as a
        reply shows them, or (``special``) as their text, as a prompt's tokenization read them."""
        return token_piece(self._vocab, token, special)

    def logprob(self, token: int, top: int) -> TokenLogprob:
        """``token``'s log-probability at the step that just sampled it, with the ``top`` most likely tokens: from
        the logits of the last position decoded (llama.cpp keeps them until the next decode)."""
        return self._entry(-1, token, top)

    def _entry(self, position: int, token: int, top: int, special: bool = False) -> TokenLogprob:
        """``token``'s log-probability (and the ``top`` most likely) under the logits of the last decode's
        ``position`` (-1: its last). ``token`` renders as ``piece`` renders it with ``special``; the alternatives
        always show special tokens by name (an end of turn is not an empty string)."""
        import llama_cpp
        import numpy as np

        n_vocab = self.n_vocab
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, position), shape=(n_vocab,))
        # log-softmax = logit - log-sum-exp, the sum taken in float64 over float32 exponentials: a tenth of the time
        # of a float64 copy (a prompt's scoring takes one a token), the same figures to ~1e-7.
        peak = float(logits.max())
        lse = peak + math.log(float(np.exp(logits - peak).sum(dtype=np.float64)))
        if top == 1:  # lm-eval's case
            best: Any = [int(logits.argmax())]
        elif top:
            best = np.argpartition(-logits, top - 1)[:top]
            best = best[np.argsort(-logits[best], kind="stable")]
        else:
            best = []
        return TokenLogprob(self.piece(token, special), float(logits[token]) - lse,
                            tuple((self.piece(int(i), True), float(logits[i]) - lse) for i in best))

    def score(self, tokens: list[int], top: int, stop: StopFlag) -> PromptScore:
        """Each of ``tokens`` after the first with its log-probability given those before it and the ``top`` most
        likely tokens there: completions' ``echo`` (special tokens by name: the pieces spell the prompt). The
        tokens stay in the cache: a reply to this prompt evaluates nothing again. A stop ends it with a
        ``TuillmError``, a failure of llama.cpp with ``DecodeFailed``.

        The scores of a prefix shared with the last scored prompt, still in the cache, are kept, and only the rest
        is decoded: an evaluation's requests share their few-shot context and differ in their last tokens."""
        llm = self._llm
        kept = self._kept_scores(tokens, top)
        begin = len(kept)  # the last kept token is decoded again: its logits score the first new token
        self._scored = None  # while the cache changes
        llm._ctx.kv_cache_seq_rm(-1, begin, -1)
        llm.n_tokens = begin
        entries = list(kept)
        size = min(SCORE_BATCH, llm.n_batch)  # what the batch llama-cpp-python made holds
        mark = log_mark()
        with abort_hook(llm._ctx.ctx, stop):
            for start in range(begin, len(tokens), size):
                chunk = tokens[start:start + size]
                llm._batch.set_batch(batch=chunk, n_past=start, logits_all=True)
                try:
                    llm._ctx.decode(llm._batch)
                except RuntimeError as exc:
                    self.reset()
                    if stop.is_set():
                        raise TuillmError("the prompt's log-probabilities: stopped") from None
                    # The machine's or the model's failure, as a reply's (a 500 from the server, not the client's 400)
                    raise DecodeFailed(f"the prompt's log-probabilities: llama.cpp failed "
                                       f"({last_llama_error(mark) or exc})") from None
                llm.input_ids[start:start + len(chunk)] = chunk
                llm.n_tokens = start + len(chunk)
                entries += [self._entry(i, tokens[start + i + 1], top, special=True) for i in range(len(chunk))
                            if start + i + 1 < len(tokens)]
        self._scored = _Scored(tuple(tokens), top, tuple(entries))
        first = self.piece(tokens[0], tokens[0] != self._added_bos) if tokens else b""
        return PromptScore(first, tuple(entries))

    def _kept_scores(self, tokens: list[int], top: int) -> tuple[TokenLogprob, ...]:
        """The last scored prompt's entries for the leading tokens ``tokens`` shares with it and with the cache (a
        reply since may have replaced part of it), but the last shared one's, whose logits are needed again; cut to
        ``top`` alternatives (none kept when the last scoring asked for fewer)."""
        scored = self._scored
        if scored is None or top > scored.top:
            return ()
        import numpy as np

        n = min(len(tokens), len(scored.tokens), self.n_tokens)
        asked = np.asarray(tokens[:n], dtype=np.int64)
        same = (asked == np.asarray(scored.tokens[:n])) & (asked == self._llm.input_ids[:n])
        shared = int(np.argmin(same)) if not same.all() else n
        return tuple(e if len(e.top) <= top else TokenLogprob(e.piece, e.logprob, e.top[:top])
                     for e in scored.entries[:max(shared - 1, 0)])

    def generate(self, tokens: list[int], sampling: Sampling, stop: StopFlag) -> Generator[int, None, None]:
        """The tokens sampled after the prompt ``tokens``, without end (the caller stops, then closes this).

        The KV cache's prefix matching the prompt is kept; only the rest is evaluated. A long prompt takes seconds,
        so while it is evaluated llama.cpp polls ``stop`` between graph nodes and a stop lands mid-evaluation: the
        generator then simply ends. Once tokens come, checking ``stop`` is the caller's (per token). Any other
        llama.cpp failure is a ``DecodeFailed`` with its logged reason. A grammar llama.cpp refuses raises here, in
        this call, not at the first token: before a caller says the reply started (a server's 200 head).
        """
        grammar = _grammar(sampling.grammar, self._llm._model.vocab)
        return self._generated(tokens, sampling, grammar, stop)

    def _generated(self, tokens: list[int], sampling: Sampling, grammar: Any,
                   stop: StopFlag) -> Generator[int, None, None]:
        # The penalties' window is the Llama's, not a generate argument: set for each reply (-1: the context).
        self._llm.last_n_tokens_size = self.n_ctx if sampling.repeat_last_n < 0 else sampling.repeat_last_n
        gen = self._llm.generate(tokens, top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
                                 typical_p=sampling.typical_p, temp=sampling.temperature,
                                 repeat_penalty=sampling.repeat_penalty, reset=True,
                                 presence_penalty=sampling.presence_penalty,
                                 frequency_penalty=sampling.frequency_penalty, mirostat_mode=sampling.mirostat,
                                 mirostat_tau=sampling.mirostat_tau, mirostat_eta=sampling.mirostat_eta,
                                 grammar=grammar, logits_processor=_biased(sampling.logit_bias))
        mark = log_mark()
        with abort_hook(self._llm._ctx.ctx, stop) as hook:
            try:
                for token in gen:
                    hook.clear()  # the prompt is evaluated: no graph polling while tokens are decoded
                    yield token
            except RuntimeError as exc:
                if not stop.is_set():
                    raise DecodeFailed(f"llama.cpp failed while generating: {last_llama_error(mark) or exc}") from None
                # Aborted mid-prompt: llama.cpp drops the unfinished batch.
            finally:
                gen.close()
