"""What a conversion will write, before it starts: the source, the output file names, and each output's size.

Sizes come from the source's tensor shapes (safetensors or GGUF headers only, nothing is read beyond them) and the
type each tensor gets in the output (``tuillm.convert.quantize.output_tensor_types`` follows llama.cpp's own
per-tensor choices), plus the metadata: copied from a GGUF source, estimated from the tokenizer for an HF one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tuillm.convert.errors import ConvertError
from tuillm.convert.output import check_name
from tuillm.convert.types import OUTPUT_TYPES, TYPE_NAMES, check_type
from tuillm.core.errors import TuillmError
from tuillm.core.files import input_problem
from tuillm.core.llama.options import LOAD_OPTIONS
from tuillm.core.options import option_map
from tuillm.core.paths import expand_user

if TYPE_CHECKING:  # gguf and numpy come with the readers: imported where a source is read, not at the app's start
    from tuillm.convert.tensors import TensorShape

__all__ = ["CONVERT_THREADS", "Source", "estimate_size", "estimate_sizes", "open_source", "output_name",
           "plan_outputs", "report_fits", "report_memory", "resolve_outputs"]

# The threads of a conversion, a merge's conversion or a re-quantization: the chat's declaration (auto, or 1 to
# llama.cpp's limit; a pool of 0 or -3 workers raised, and llama.cpp asserts past the limit), each command's help.
CONVERT_THREADS = replace(option_map(LOAD_OPTIONS)["n_threads"], name="threads", group="",
                          help="worker threads (auto: up to 4 for converting, every core for llama.cpp's quantizer)")

# A type suffix already in a GGUF's name ("model-F16", "model.q4_k_m"): dropped before the new type is added.
_TYPE_SUFFIX = re.compile(r"[-_.](f32|f16|bf16|q\d(_[0-9a-z]+)*|iq\d(_[0-9a-z]+)*)$", re.IGNORECASE)
# The GGUF keys besides the vocabulary (architecture figures, names, special token ids): a few KB.
_OTHER_METADATA = 4096


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "hf" (convert) | "gguf" (requantize)
    name: str  # the base of the output file names
    tensors: list[TensorShape]
    n_gqa: int
    header_bytes: int  # metadata + tensor table (estimated for an HF checkpoint)

    @property
    def params(self) -> int:
        total = 0
        for t in self.tensors:
            n = 1
            for d in t.ne:
                n *= d
            total += n
        return total

    @property
    def mode(self) -> str:
        return "convert" if self.kind == "hf" else "requantize"


def open_source(path: Path) -> Source:
    """Read the headers of an HF checkpoint folder or a GGUF file; a one-line TuillmError when it is neither."""
    from tuillm.convert.hf_to_gguf import hf_tensors
    from tuillm.convert.quantize import gguf_tensors

    path = expand_user(path)
    problem = input_problem(path)
    if problem:
        raise TuillmError(f"{path}: {problem}")
    try:
        if path.is_dir():
            tensors, n_gqa = hf_tensors(path)
            return Source(path, "hf", hf_name(path), tensors, n_gqa, _hf_header_bytes(path, tensors))
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise TuillmError(f"{path}: not a GGUF file or an HF checkpoint folder")
        tensors, n_gqa, header = gguf_tensors(path)
        return Source(path, "gguf", gguf_name(path), tensors, n_gqa, header)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise TuillmError(f"{path}: unreadable ({exc.__class__.__name__})") from None


def hf_name(folder: Path) -> str:
    """The model's name: the folder's, or the repository's for a hub cache snapshot (named by a commit hash)."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.split("--")[-1]
    return folder.absolute().name  # not resolved: a link's own name is the one the user chose


def gguf_name(path: Path) -> str:
    return _TYPE_SUFFIX.sub("", path.stem) or path.stem


def output_name(source_name: str, out_type: str) -> str:
    """``SmolLM2-135M`` + ``q4_k_m`` -> ``SmolLM2-135M-Q4_K_M.gguf`` (the usual spelling on the hub)."""
    return f"{source_name}-{check_type(out_type).upper()}.gguf"


def plan_outputs(source: Source, types: list[str], folder: Path) -> list[tuple[str, Path]]:
    return [(t, Path(folder) / output_name(source.name, t)) for t in types]


def resolve_outputs(src: Path, types: list[str], output: str) -> list[tuple[str, Path]]:
    """The CLI's ``-o``: a name with ``{type}`` (or ``{TYPE}``) gives one file per type; a folder (existing, or
    ending with "/", then created) gets names from the source; a plain file name takes one type only."""
    if not types:
        raise TuillmError("--type: give at least one type")
    if not output.strip():  # as a path, the current folder: a script's unset variable would write there
        raise TuillmError("-o: an empty path; give a file, a folder, or a name with {type} in it")
    if "{type}" in output or "{TYPE}" in output:
        return [(t, expand_user(output.replace("{type}", t).replace("{TYPE}", t.upper()))) for t in types]
    path = expand_user(output)
    try:
        check_name(path)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    if output.endswith("/") or path.is_dir():
        src = expand_user(src)
        problem = input_problem(src)
        if problem:  # before the folder is made: a mistyped source leaves no empty folder behind
            raise TuillmError(f"{src}: {problem}")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TuillmError(f"{path}: cannot create the folder ({exc.strerror or exc})") from None
        name = hf_name(src) if src.is_dir() else gguf_name(src)
        return [(t, path / output_name(name, t)) for t in types]
    if len(types) > 1:
        raise TuillmError(f"{output}: with several types, -o is a folder or a name with {{type}} in it")
    return [(types[0], path)]


def estimate_size(source: Source, out_type: str, *, imatrix: bool | None = None,
                  tensor_types: Mapping[str, str] | None = None) -> int:
    """Bytes of the GGUF file of ``out_type`` made from ``source``; ``imatrix`` (default: when the type needs one)
    and ``tensor_types`` (--tensor-type overrides) change a few tensors' types, as in llama.cpp."""
    from tuillm.convert.quantize import output_tensor_types
    from tuillm.convert.tensors import tensor_bytes

    out_type = check_type(out_type)
    spec = OUTPUT_TYPES[out_type]
    direct = source.kind == "hf" and spec.direct and not (tensor_types and spec.quantized)  # overrides: llama.cpp
    with_matrix = spec.needs_imatrix if imatrix is None else imatrix
    types = output_tensor_types(source.tensors, out_type, n_gqa=source.n_gqa, direct=direct, imatrix=with_matrix,
                                tensor_types=tensor_types)
    return source.header_bytes + sum(tensor_bytes(t.ne, q) for t, q in zip(source.tensors, types, strict=True))


def estimate_sizes(source: Source, types: tuple[str, ...] | list[str] = TYPE_NAMES) -> dict[str, int]:
    return {t: estimate_size(source, t) for t in types}


def report_memory(source: Source) -> int:
    """About the memory the quality report needs: the original in transformers (float32) for a checkpoint, the
    input GGUF in llama.cpp for a re-quantization; plus one output in llama.cpp at a time."""
    from tuillm.convert.tensors import tensor_bytes

    if source.kind == "hf":
        return int(source.params * 4 * 1.25) + estimate_size(source, "q8_0")
    return 2 * (source.header_bytes + sum(tensor_bytes(t.ne, t.type) for t in source.tensors))


def report_fits(source: Source, available: int) -> bool:
    """Whether to offer the report by default: it must leave room for everything else."""
    return report_memory(source) <= available * 0.6


def _gguf_string(s: str) -> int:
    return 8 + len(s.encode("utf-8"))


def _hf_header_bytes(folder: Path, tensors: list[TensorShape]) -> int:
    """The GGUF metadata the converter writes for this checkpoint: mostly the vocabulary (each token a string,
    a score and a type; each merge a string) and the chat template, then the tensor table."""
    from tuillm.convert.checkpoint import read_json_object  # numpy with it: not at the app's start

    table = sum(_gguf_string(t.name) + 4 + 8 * len(t.ne) + 4 + 8 for t in tensors)
    vocab = 0
    try:
        tok = read_json_object(folder / "tokenizer.json")  # bounded: a sparse 200 GB file was a MemoryError
        model = tok.get("model", {})
        tokens = list(model.get("vocab", {}))
        if isinstance(model.get("vocab"), list):  # unigram: [[piece, score], ...]
            tokens = [piece for piece, _ in model["vocab"]]
        tokens += [t.get("content", "") for t in tok.get("added_tokens", [])]
        vocab = sum(_gguf_string(t) + 4 + 4 for t in tokens)
        vocab += sum(_gguf_string(m if isinstance(m, str) else " ".join(m)) for m in model.get("merges", []))
    except (ConvertError, AttributeError, TypeError, ValueError):
        # SentencePiece only (tokenizer.model) or unreadable: about 16 bytes of text and figures per token.
        n_vocab = next((t.ne[1] for t in tensors if t.name == "token_embd.weight" and len(t.ne) > 1), 32000)
        vocab = 32 * n_vocab
    template = 0
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        try:
            if name.endswith(".jinja"):
                template += (folder / name).stat().st_size
            else:
                value = read_json_object(folder / name).get("chat_template")
                template += len(value.encode("utf-8")) if isinstance(value, str) else 0
        except (OSError, ConvertError, AttributeError, ValueError):  # ValueError: a lone surrogate, not UTF-8
            pass
    return _OTHER_METADATA + vocab + template + table
