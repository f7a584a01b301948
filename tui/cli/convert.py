"""``tuillm convert HF_DIR -o OUT.gguf --type T [--report]``: an HF checkpoint folder to one GGUF file."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

# The registry is plain data (no gguf import): --help stays instant.
from tuillm.convert.types import CONVERT_DEFAULT, IMATRIX_TYPE_NAMES, TYPE_NAMES
from tuillm.core.conversion.plan import CONVERT_THREADS
from tuillm.core.text import safe_line
from tuillm.tui.cli.options import add_options, option_values


def parse_types(text: str) -> list[str]:
    """``q8_0,q4_k_m`` -> ["q8_0", "q4_k_m"] (argparse ``type=``)."""
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in TYPE_NAMES]
    if unknown or not types:
        named = ", ".join(unknown) or repr(text)
        raise argparse.ArgumentTypeError(f"unknown type {named}; choose from {', '.join(TYPE_NAMES)}")
    return list(dict.fromkeys(types))


def add_quant_options(p: argparse.ArgumentParser) -> None:
    """The importance-matrix and tensor-type options (convert and quantize alike; checked in convert_many)."""
    g = p.add_argument_group("importance matrix and per-tensor types (need llama.cpp's tools: `make` builds them)")
    g.add_argument("--imatrix", metavar="auto|FILE|none", default=None,
                   help="quantize with an importance matrix: auto computes one with llama-imatrix on a built-in "
                   "text (kept beside the output as NAME.imatrix, reused for the same source), or give a file; "
                   f"implied for {', '.join(IMATRIX_TYPE_NAMES)} (which none refuses)")
    g.add_argument("--calibration", metavar="FILE", default=None,
                   help="the text --imatrix auto computes the matrix on (UTF-8, up to 16 MiB)")
    g.add_argument("--tensor-type", action="append", default=[], metavar="PATTERN=TYPE", dest="tensor_types",
                   help="the ggml type of the tensors whose name matches PATTERN (a regex, as llama-quantize's: "
                   "token_embd=q8_0); repeatable, the first match wins")
    g.add_argument("--output-tensor-type", metavar="TYPE", default=None,
                   help="the output head's type (--tensor-type '^output\\.weight$=TYPE')")
    g.add_argument("--token-embedding-type", metavar="TYPE", default=None,
                   help="the token embedding's type (--tensor-type '^token_embd\\.weight$=TYPE')")


def _refuse_empty(args: argparse.Namespace, flags: dict[str, str]) -> None:
    """An option given as "" (a script's unset variable) is refused: as a path it read "." (the current
    folder), and as a type it was skipped without a word."""
    from tuillm.core.errors import TuillmError

    for flag, dest in flags.items():
        value = getattr(args, dest)
        if value is not None and not value.strip():
            raise TuillmError(f"{flag}: an empty value")


def imatrix_options(args: argparse.Namespace) -> tuple[str | None, Path | None]:
    """``--imatrix`` ("auto" or "none" in any case, or a file) and ``--calibration`` as convert_many takes them."""
    from tuillm.core.conversion.sweep_options import IMATRIX_AUTO, IMATRIX_NONE

    _refuse_empty(args, {"--imatrix": "imatrix", "--calibration": "calibration"})
    given = args.imatrix
    word = given.strip().lower() if given is not None else None
    imatrix = word if word in (IMATRIX_AUTO, IMATRIX_NONE) else given
    return imatrix, Path(args.calibration) if args.calibration is not None else None


def tensor_types(args: argparse.Namespace) -> dict[str, str] | None:
    """The overrides in the order given, the two shortcuts first; a bad one is one line (TuillmError)."""
    from tuillm.convert.errors import ConvertError
    from tuillm.convert.quant_rules import EMBEDDING_PATTERN, OUTPUT_PATTERN, check_tensor_types
    from tuillm.core.errors import TuillmError

    _refuse_empty(args, {"--output-tensor-type": "output_tensor_type",
                         "--token-embedding-type": "token_embedding_type"})
    items = [f"{OUTPUT_PATTERN}={args.output_tensor_type}"] if args.output_tensor_type else []
    items += [f"{EMBEDDING_PATTERN}={args.token_embedding_type}"] if args.token_embedding_type else []
    items += args.tensor_types
    try:
        return check_tensor_types(items) or None
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("convert", help="convert an HF checkpoint folder to GGUF (optionally quantized)",
                              description="Convert an HF checkpoint folder (safetensors) to a GGUF file. f32, f16, "
                              "bf16 and q8_0 are written directly; other types go through llama.cpp's quantizer.")
    p.add_argument("model", metavar="HF_DIR", help="HF checkpoint folder (config.json, *.safetensors, tokenizer)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf",
                   help="output file; for several types a folder (names from the model) or a name with {type}")
    p.add_argument("--type", default=[CONVERT_DEFAULT], type=parse_types, metavar="TYPE[,TYPE...]",
                   help=f"output type(s) (default {CONVERT_DEFAULT}); several share one f16/bf16 intermediate: "
                   f"{', '.join(TYPE_NAMES)}")
    add_options(p, [replace(CONVERT_THREADS, help="worker threads (auto: up to 4)")], groups=False)
    p.add_argument("--report", action="store_true",
                   help="afterwards, compare the result with the original on a built-in text (needs transformers)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output file")
    add_quant_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """One or several types in one job (convert and quantize alike): each written file's report, and its path."""
    from tuillm.core.conversion.job import convert_many
    from tuillm.core.conversion.plan import resolve_outputs
    from tuillm.core.files import named_path
    from tuillm.tui.cli.progress import CliRenderer, print_path

    src = named_path(args.model, "source")
    threads = option_values(args, [CONVERT_THREADS])["threads"]
    overrides = tensor_types(args)  # the flags first: a bad one is refused before -o's folder is made
    imatrix, calibration = imatrix_options(args)
    outputs = resolve_outputs(src, args.type, args.output)
    results = convert_many(src, outputs, emit=CliRenderer(quiet=args.quiet), report=args.report,
                           threads=threads, force=args.force, imatrix=imatrix,
                           calibration=calibration, tensor_types=overrides)
    for result in results:
        for line in result.report:
            print(safe_line(line))  # the quality report names the file's tensors
        print_path(result.path)
    return 0
