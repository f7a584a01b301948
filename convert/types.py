"""The one registry of GGUF output types: every command, estimate and pane reads its facts from here.

Pure data with no heavy import, so ``tuillm convert --help`` can list the types instantly. ``ggml`` names the
type of the large tensors before llama.cpp's per-tensor adjustments (a ``gguf.GGMLQuantizationType`` member name);
``ftype`` the ``LLAMA_FTYPE_*`` constant llama.cpp's quantizer takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuillm.convert.errors import ConvertError

DIRECT, LLAMA_CPP = "direct", "llama.cpp"


@dataclass(frozen=True)
class OutputType:
    name: str  # as users type it: "q4_k_m"
    ftype: str  # llama.cpp's LLAMA_FTYPE_<ftype>
    ggml: str  # gguf.GGMLQuantizationType member of the large tensors
    writer: str  # DIRECT: our converter writes it tensor by tensor; LLAMA_CPP: llama.cpp's quantizer
    bpw: float  # bits per weight for a typical llama model (K-quants mix types; the averages llama-quantize reports)
    note: str  # what it is for, in a few words (the Convert pane's list)
    needs_imatrix: bool = False  # llama.cpp refuses it without an importance matrix (one is computed: "auto")
    merge_choice: bool = False  # offered as a merge target in the Train pane

    @property
    def direct(self) -> bool:
        return self.writer == DIRECT

    @property
    def quantized(self) -> bool:
        """False for the float types (f32, f16, bf16): the ones a GGUF LoRA adapter and an intermediate can be."""
        return self.ggml not in ("F32", "F16", "BF16")


# Best first, as users pick: the usual choices near the top (the Convert pane lists them in this order).
_TYPES = (
    OutputType("q4_k_m", "MOSTLY_Q4_K_M", "Q4_K", LLAMA_CPP, 4.89, "good, the usual pick", merge_choice=True),
    OutputType("q8_0", "MOSTLY_Q8_0", "Q8_0", DIRECT, 8.5, "near lossless", merge_choice=True),
    OutputType("q5_k_m", "MOSTLY_Q5_K_M", "Q5_K", LLAMA_CPP, 5.69, "very good", merge_choice=True),
    OutputType("q6_k", "MOSTLY_Q6_K", "Q6_K", LLAMA_CPP, 6.56, "very good", merge_choice=True),
    OutputType("f16", "MOSTLY_F16", "F16", DIRECT, 16.0, "near lossless", merge_choice=True),
    OutputType("bf16", "MOSTLY_BF16", "BF16", DIRECT, 16.0, "lossless from bf16", merge_choice=True),
    OutputType("q4_k_s", "MOSTLY_Q4_K_S", "Q4_K", LLAMA_CPP, 4.58, "smaller"),
    OutputType("q5_k_s", "MOSTLY_Q5_K_S", "Q5_K", LLAMA_CPP, 5.54, "good"),
    OutputType("q3_k_m", "MOSTLY_Q3_K_M", "Q3_K", LLAMA_CPP, 3.91, "low"),
    OutputType("q3_k_l", "MOSTLY_Q3_K_L", "Q3_K", LLAMA_CPP, 4.27, "low"),
    OutputType("q3_k_s", "MOSTLY_Q3_K_S", "Q3_K", LLAMA_CPP, 3.5, "lower"),
    OutputType("q2_k", "MOSTLY_Q2_K", "Q2_K", LLAMA_CPP, 3.35, "lowest"),
    # The IQ types: lattice/non-linear codebooks, best with an importance matrix (the 2-bit and iq3_xxs need one).
    OutputType("iq4_xs", "MOSTLY_IQ4_XS", "IQ4_XS", LLAMA_CPP, 4.25, "near q4_k_m, smaller"),
    OutputType("iq4_nl", "MOSTLY_IQ4_NL", "IQ4_NL", LLAMA_CPP, 4.5, "4-bit, 32-value blocks"),
    OutputType("iq3_m", "MOSTLY_IQ3_M", "IQ3_S", LLAMA_CPP, 3.66, "3-bit mix"),
    OutputType("iq3_s", "MOSTLY_IQ3_S", "IQ3_S", LLAMA_CPP, 3.44, "3-bit"),
    OutputType("iq3_xxs", "MOSTLY_IQ3_XXS", "IQ3_XXS", LLAMA_CPP, 3.06, "3-bit, needs imatrix", needs_imatrix=True),
    OutputType("iq2_m", "MOSTLY_IQ2_M", "IQ2_S", LLAMA_CPP, 2.7, "2-bit mix, needs imatrix", needs_imatrix=True),
    OutputType("iq2_s", "MOSTLY_IQ2_S", "IQ2_XS", LLAMA_CPP, 2.5, "2-bit, needs imatrix", needs_imatrix=True),
    OutputType("iq2_xs", "MOSTLY_IQ2_XS", "IQ2_XS", LLAMA_CPP, 2.31, "2-bit, needs imatrix", needs_imatrix=True),
    OutputType("iq2_xxs", "MOSTLY_IQ2_XXS", "IQ2_XXS", LLAMA_CPP, 2.06, "tiny, needs imatrix", needs_imatrix=True),
    OutputType("iq1_m", "MOSTLY_IQ1_M", "IQ1_M", LLAMA_CPP, 1.75, "extreme, needs imatrix", needs_imatrix=True),
    OutputType("q4_0", "MOSTLY_Q4_0", "Q4_0", LLAMA_CPP, 4.5, "legacy", merge_choice=True),
    OutputType("q4_1", "MOSTLY_Q4_1", "Q4_1", LLAMA_CPP, 5.0, "legacy"),
    OutputType("q5_0", "MOSTLY_Q5_0", "Q5_0", LLAMA_CPP, 5.5, "legacy"),
    OutputType("q5_1", "MOSTLY_Q5_1", "Q5_1", LLAMA_CPP, 6.0, "legacy"),
    OutputType("f32", "ALL_F32", "F32", DIRECT, 32.0, "lossless, huge"),
)
OUTPUT_TYPES: dict[str, OutputType] = {t.name: t for t in _TYPES}
TYPE_NAMES: tuple[str, ...] = tuple(OUTPUT_TYPES)
DIRECT_TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in _TYPES if t.direct)
MERGE_TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in _TYPES if t.merge_choice)
UNQUANTIZED_TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in _TYPES if not t.quantized)
IMATRIX_TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in _TYPES if t.needs_imatrix)
# The ggml types a --tensor-type override may name (llama-quantize's names, any case): the storage types of weights.
TENSOR_TYPE_NAMES: tuple[str, ...] = (
    "f32", "f16", "bf16", "q8_0", "q6_k", "q5_k", "q5_1", "q5_0", "q4_k", "q4_1", "q4_0", "q3_k", "q2_k",
    "iq4_xs", "iq4_nl", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s",
)
# Weight types llama.cpp only writes with an importance matrix (llama-quant.cpp's tensor_requires_imatrix).
IMATRIX_GGML_TYPES = frozenset({"IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"})
CONVERT_DEFAULT = "f16"  # `tuillm convert` without --type, and a GGUF adapter's type
MERGE_DEFAULT = "q8_0"  # `tuillm merge` without --type, and the Train pane's first choice


def output_type(name: str) -> OutputType | None:
    """The type called ``name`` (any case), or None."""
    return OUTPUT_TYPES.get(name.strip().lower())


def check_type(name: str) -> str:
    """The registry's name for ``name`` (any case); a one-line ConvertError naming the choices otherwise."""
    found = output_type(name)
    if found is None:
        raise ConvertError(f"unknown output type {name!r}; choose one of {', '.join(TYPE_NAMES)}")
    return found.name
