"""The type llama.cpp gives each tensor of a quantized output, predicted before anything is written.

A port of ``llama_tensor_get_type`` in llama.cpp's src/llama-quant.cpp (the version tuillm builds) for dense
models: the output head (or the tied embedding) gets more bits, the *_M/*_L mixes and the IQ types give more bits
to some attn_v/ffn_down/attn_output tensors (by layer: llama.cpp counts them as it goes, so this is stateful), a
``--tensor-type`` override replaces the mix for the tensors it matches (first match wins), and rows that do not
split into the type's blocks fall back to a type that does. Sizes, the quantize progress and the imatrix
requirement all read this; tests/core/conversion/test_plan.py and tests/convert/test_quant_rules.py check it
against real outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import gguf

from tuillm.convert.errors import ConvertError
from tuillm.convert.tensors import Q, TensorShape, direct_tensor_type, ggml_type
from tuillm.convert.types import IMATRIX_GGML_TYPES, OUTPUT_TYPES, check_type

# A row that is not a whole number of the type's blocks: llama.cpp's tensor_type_fallback (F16 when even the
# fallback does not fit; a 32-value type has nowhere smaller to go).
_FALLBACK = {Q.Q2_K: Q.Q4_0, Q.Q3_K: Q.Q4_0, Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0,
             **{q: Q.IQ4_NL for q in (Q.IQ1_S, Q.IQ1_M, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S,
                                      Q.IQ4_XS)}}
# The 1- and 2-bit IQ mixes share one branch of llama.cpp's rules; these also get Q5_K on the output head.
_IQ2 = frozenset({"iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq1_s", "iq1_m"})
_SMALL_HEAD = _IQ2 | {"iq3_xxs"}

OUTPUT, TOKEN_EMBD, ATTN_V, ATTN_K, ATTN_Q, ATTN_OUT, FFN_DOWN, OTHER = (
    "output", "token_embd", "attn_v", "attn_k", "attn_q", "attn_output", "ffn_down", "other")


def _category(name: str) -> str:
    """llama.cpp's tensor_get_category, reduced to the categories the rules for dense models tell apart (attn_qkv
    and attn_kv_b count as attn_v there)."""
    if name == "output.weight":
        return OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return TOKEN_EMBD
    for part, category in (("attn_qkv.weight", ATTN_V), ("attn_kv_b.weight", ATTN_V), ("attn_v.weight", ATTN_V),
                           ("attn_k.weight", ATTN_K), ("attn_q.weight", ATTN_Q), ("attn_output.weight", ATTN_OUT)):
        if part in name:
            return category
    if "ffn_up" in name or "ffn_gate" in name:
        return OTHER
    return FFN_DOWN if "ffn_down" in name else OTHER


def quantizable(t: TensorShape) -> bool:
    """Weights llama.cpp quantizes; it copies the rest (norms, biases, 1-D tensors) as they are."""
    return t.name.endswith("weight") and len(t.ne) >= 2 and not t.name.endswith("_norm.weight")


def output_tensor_types(tensors: list[TensorShape], out_type: str, *, n_gqa: int = 1, direct: bool = False,
                        imatrix: bool = False,
                        tensor_types: Mapping[str, str] | None = None) -> list[gguf.GGMLQuantizationType]:
    """The type of each tensor in the output of ``out_type``.

    ``direct``: written by our converter from an HF checkpoint (f32/f16/bf16/q8_0 only). Otherwise llama.cpp's
    rules; ``imatrix``: quantized with an importance matrix (a few IQ rules depend on it); ``tensor_types``: the
    ``--tensor-type`` overrides, regex pattern -> ggml type name, in the order given.
    """
    out_type = check_type(out_type)
    base = ggml_type(out_type)
    if direct:
        if not OUTPUT_TYPES[out_type].direct:
            raise ConvertError(f"output type {out_type!r} is not written directly")
        return [direct_tensor_type(t.name, tuple(reversed(t.ne)), base) for t in tensors]
    if not OUTPUT_TYPES[out_type].quantized:  # llama.cpp applies no mix (and no override) to a float type
        return [base if quantizable(t) else t.type for t in tensors]
    rules = _LlamaCppRules(out_type, base, tensors, n_gqa, imatrix, tensor_types or {})
    return [rules.type_of(t) if quantizable(t) else t.type for t in tensors]


def requires_imatrix(tensors: list[TensorShape], types: list[gguf.GGMLQuantizationType]) -> bool:
    """Whether llama.cpp refuses to write these types without an importance matrix (the embedding and the output
    head are exempt)."""
    return any(q.name in IMATRIX_GGML_TYPES and _category(t.name) not in (OUTPUT, TOKEN_EMBD)
               for t, q in zip(tensors, types, strict=True) if quantizable(t))


def _block(qtype: Q) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][0]


def _fits(qtype: Q, row: int) -> Q:
    if row % _block(qtype) == 0:
        return qtype
    new = _FALLBACK.get(qtype, qtype)
    return new if row % _block(new) == 0 else Q.F16


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class _LlamaCppRules:
    """One output's choices, in file order (the attn_v and ffn_down counters advance as llama.cpp's do)."""

    def __init__(self, out_type: str, base: Q, tensors: list[TensorShape], n_gqa: int, imatrix: bool,
                 tensor_types: Mapping[str, str]) -> None:
        self.out_type, self.base, self.n_gqa, self.imatrix = out_type, base, n_gqa, imatrix
        self.tied = not any(t.name == "output.weight" for t in tensors)
        self.n_v = sum(1 for t in tensors if _category(t.name) == ATTN_V)
        layers = [int(m.group(1)) for t in tensors if (m := re.match(r"blk\.(\d+)\.", t.name))]
        self.n_layer = max(layers) + 1 if layers else 0
        self.i_v = self.i_down = 0
        self.manual = [(re.compile(p), Q[q.upper()]) for p, q in tensor_types.items()]

    def type_of(self, t: TensorShape) -> Q:
        manual = next((q for pattern, q in self.manual if pattern.search(t.name)), None)
        # An override skips the mix entirely: its tensor does not advance llama.cpp's layer counters either.
        new = manual if manual is not None else self._mix(t.name, _category(t.name), t.ne[0])
        return _fits(new, t.ne[0])

    def _mix(self, name: str, category: str, row: int) -> Q:
        ft, base = self.out_type, self.base
        if category == OUTPUT or (self.tied and category == TOKEN_EMBD):
            if row % _block(base) != 0:
                return Q.Q8_0
            if ft in _SMALL_HEAD:
                return Q.Q5_K
            return base if base == Q.Q8_0 else Q.Q6_K
        if category == TOKEN_EMBD:
            if ft in ("iq2_xxs", "iq2_xs", "iq1_s", "iq1_m"):
                return Q.Q2_K
            return Q.IQ3_S if ft in ("iq2_s", "iq2_m", "iq3_xxs") else base
        if ft in _IQ2:
            return self._iq2(category)
        if category == ATTN_V:
            self.i_v += 1
            return self._attn_v(self.i_v - 1)
        if category == FFN_DOWN:
            self.i_down += 1
            return self._ffn_down(self.i_down - 1)
        if category in (ATTN_K, ATTN_Q) and ft == "iq3_xxs":
            return Q.IQ2_S
        if category == ATTN_OUT:
            return {"q2_k": Q.Q3_K, "iq3_xxs": Q.IQ3_S, "q3_k_m": Q.Q4_K, "q3_k_l": Q.Q5_K,
                    "iq3_m": Q.Q4_K}.get(ft, base)
        return base

    def _iq2(self, category: str) -> Q:
        ft, base = self.out_type, self.base
        wide = Q.IQ3_S if ft in ("iq2_s", "iq2_m") else Q.Q2_K
        if category == ATTN_V:
            self.i_v += 1
            return Q.Q4_K if self.n_gqa >= 4 else wide
        if category == FFN_DOWN:
            self.i_down += 1
            return wide if self.i_down - 1 < self.n_layer // 8 else base
        if category == ATTN_OUT:
            return {"iq1_s": Q.IQ2_XXS, "iq1_m": Q.IQ2_XXS, "iq2_s": Q.IQ3_S, "iq2_m": Q.IQ3_S}.get(ft, base)
        return base

    def _attn_v(self, i: int) -> Q:
        ft, gqa4 = self.out_type, self.n_gqa >= 4
        if ft == "q2_k":
            return Q.Q4_K if gqa4 else Q.Q3_K
        if ft == "iq3_xxs":
            return Q.Q4_K if gqa4 else (Q.IQ3_XXS if self.imatrix else Q.IQ3_S)
        if (ft == "iq3_s" and gqa4) or ft == "iq3_m":
            return Q.Q4_K
        if ft == "q3_k_m":
            return Q.Q5_K if i < 2 else Q.Q4_K
        if ft == "q3_k_l" or (ft in ("iq4_nl", "iq4_xs") and gqa4):
            return Q.Q5_K
        if ft in ("q4_k_m", "q5_k_m") and _use_more_bits(i, self.n_v):
            return Q.Q6_K
        if ft == "q4_k_s" and i < 4:
            return Q.Q5_K
        return self.base

    def _ffn_down(self, i: int) -> Q:
        ft, n = self.out_type, self.n_layer
        first = i < n // 8
        if ft == "q2_k":
            return Q.Q3_K
        if ft == "iq3_xxs" and not self.imatrix:
            return Q.Q4_K if first else Q.Q3_K
        if ft == "q3_k_m":
            return Q.Q5_K if i < n // 16 else Q.Q4_K
        if ft == "iq3_m" and first:
            return Q.Q4_K
        if ft == "q3_k_l":
            return Q.Q5_K
        if ft == "q4_k_m":
            return Q.Q6_K if _use_more_bits(i, n) else self.base
        if ft in ("iq4_nl", "iq4_xs") and first and not self.imatrix:
            return Q.Q5_K
        if ft == "q5_k_m" and _use_more_bits(i, n):
            return Q.Q6_K
        if ft == "q4_k_s" and first:
            return Q.Q5_K
        if ft in ("q4_0", "q5_0") and self.imatrix and first:
            return Q.Q4_1 if ft == "q4_0" else Q.Q5_1
        return self.base


MAX_PATTERN = 200  # characters of one --tensor-type pattern (llama-quantize compiles it as a regex per tensor)
MAX_TENSOR_NAME = 64  # ggml's GGML_MAX_NAME: no tensor name is longer
OUTPUT_PATTERN, EMBEDDING_PATTERN = r"^output\.weight$", r"^token_embd\.weight$"  # the two shortcuts' patterns


# Quantifiers that repeat more than once (*, +, {2,}): a backtracking matcher (Python's re here, std::regex in
# llama-quantize) tries about len(name) ** their number ways; past 3 a failing match took minutes per tensor.
MAX_REPEATS = 3


def _backtracking_problem(pattern: str) -> str | None:
    """Why matching ``pattern`` could take exponential time (a repeated group: "(.*.*)*z", "(.|.)*z") or too
    long (more than MAX_REPEATS repetitions), or None. Read from re's parse of the pattern (it compiled)."""
    from re import _constants as sre
    from re import _parser as sre_parse

    single = (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN)
    repeats = 0

    def walk(items: list) -> str | None:
        nonlocal repeats
        for op, av in items:
            if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[1] > 1:
                repeats += 1
                if len(av[2]) != 1 or av[2][0][0] not in single:
                    return "a repeated group can take exponential time; repeat single characters (.*, \\d+)"
            subs = [av[-1]] if op is sre.SUBPATTERN else av[1] if op is sre.BRANCH else \
                [av[2]] if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) else []
            for sub in subs:
                if problem := walk(sub):
                    return problem
        return None

    problem = walk(sre_parse.parse(pattern))
    if problem is None and repeats > MAX_REPEATS:
        problem = f"more than {MAX_REPEATS} repetitions (*, +, {{n,m}}): matching could take minutes"
    return problem


def check_tensor_types(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["token_embd=q8_0", ...]`` -> {pattern: ggml type}, as llama-quantize reads them (the pattern lower-cased,
    a regex searched in each tensor name; the first match wins); a one-line ConvertError for a bad one."""
    from tuillm.convert.types import TENSOR_TYPE_NAMES

    found: dict[str, str] = {}
    for item in items:
        pattern, sep, qtype = item.partition("=")
        pattern, qtype = pattern.strip().lower(), qtype.strip().lower()
        if not sep or not pattern or not qtype:
            raise ConvertError(f"--tensor-type {item!r}: write PATTERN=TYPE (e.g. token_embd=q8_0)")
        if qtype not in TENSOR_TYPE_NAMES:
            raise ConvertError(f"--tensor-type {item!r}: unknown ggml type {qtype!r}; choose one of "
                               f"{', '.join(TENSOR_TYPE_NAMES)}")
        if len(pattern) > MAX_PATTERN or not pattern.isprintable():
            raise ConvertError(f"--tensor-type: a pattern is printable text of at most {MAX_PATTERN} characters")
        # Checked before compiling: re raises OverflowError (not re.error) on a{99999999999}, and a count past a
        # tensor name's length matches nothing while C++'s std::regex may run out of room building it.
        counts = re.findall(r"(?<!\\)\{(\d*)(?:,(\d*))?\}", pattern)
        if any(int(n) > MAX_TENSOR_NAME for pair in counts for n in pair if n):
            raise ConvertError(f"--tensor-type {item!r}: a repetition count above {MAX_TENSOR_NAME} (the longest "
                               "tensor name) matches nothing")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConvertError(f"--tensor-type {item!r}: not a valid pattern ({exc.msg})") from None
        # Backreferences, lookarounds and inline flags ((?i)): C++'s std::regex reads them otherwise or refuses
        # them, and llama-quantize then fails with no word on why; a plain group (?:...) is the same in both.
        if problem := _backtracking_problem(pattern):
            raise ConvertError(f"--tensor-type {item!r}: {problem}")
        if re.search(r"\\[1-9]|(?<!\\)\(\?(?!:)", pattern):
            raise ConvertError(f"--tensor-type {item!r}: backreferences, lookarounds and inline flags are not "
                               "supported")
        found.setdefault(pattern, qtype)  # a repeated pattern: the first wins, as in llama.cpp
    return found
