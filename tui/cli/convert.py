"""``tuillm convert HF_DIR -o OUT.gguf --type T [--report]``: an HF checkpoint folder to one GGUF file."""

from __future__ import annotations

import argparse
from pathlib import Path

# The registry is plain data (no gguf import): --help stays instant.
from tuillm.convert.types import CONVERT_DEFAULT, TYPE_NAMES


def parse_types(text: str) -> list[str]:
    """``q8_0,q4_k_m`` -> ["q8_0", "q4_k_m"] (argparse ``type=``)."""
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in TYPE_NAMES]
    if unknown or not types:
        named = ", ".join(unknown) or repr(text)
        raise argparse.ArgumentTypeError(f"unknown type {named}; choose from {', '.join(TYPE_NAMES)}")
    return list(dict.fromkeys(types))


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
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: up to 4)")
    p.add_argument("--report", action="store_true",
                   help="afterwards, compare the result with the original on a built-in text (needs transformers)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output file")
    return p


def run(args: argparse.Namespace) -> int:
    """One or several types in one job (convert and quantize alike): each written file's report, and its path."""
    from tuillm.core.conversion.job import convert_many
    from tuillm.core.conversion.plan import resolve_outputs
    from tuillm.tui.cli.progress import CliRenderer

    src = Path(args.model)
    outputs = resolve_outputs(src, args.type, args.output)
    results = convert_many(src, outputs, emit=CliRenderer(quiet=args.quiet), report=args.report,
                           threads=args.threads, force=args.force)
    for result in results:
        for line in result.report:
            print(line)
        print(result.path)
    return 0
