"""``tuillm convert HF_DIR -o OUT.gguf --type T [--report]``: an HF checkpoint folder to one GGUF file."""

from __future__ import annotations

import argparse
from pathlib import Path

# Kept in sync with tuillm.convert.quantize.OUTPUT_TYPES (not imported: --help must stay instant).
TYPES = ("f32", "f16", "bf16", "q8_0", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q4_k_m",
         "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k")


def parse_types(text: str) -> list[str]:
    """``q8_0,q4_k_m`` -> ["q8_0", "q4_k_m"] (argparse ``type=``)."""
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in TYPES]
    if unknown or not types:
        named = ", ".join(unknown) or repr(text)
        raise argparse.ArgumentTypeError(f"unknown type {named}; choose from {', '.join(TYPES)}")
    return list(dict.fromkeys(types))


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("convert", help="convert an HF checkpoint folder to GGUF (optionally quantized)",
                              description="Convert an HF checkpoint folder (safetensors) to a GGUF file. f32, f16, "
                              "bf16 and q8_0 are written directly; other types go through llama.cpp's quantizer.")
    p.add_argument("model", metavar="HF_DIR", help="HF checkpoint folder (config.json, *.safetensors, tokenizer)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf",
                   help="output file; for several types a folder (names from the model) or a name with {type}")
    p.add_argument("--type", default=["f16"], type=parse_types, metavar="TYPE[,TYPE...]",
                   help=f"output type(s) (default f16); several share one f16/bf16 intermediate: {', '.join(TYPES)}")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: up to 4)")
    p.add_argument("--report", action="store_true",
                   help="afterwards, compare the result with the original on a built-in text (needs transformers)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def run(args: argparse.Namespace) -> int:
    """One or several types in one job (convert and quantize alike): each written file's report, and its path."""
    from tuillm.core.conversion.job import convert_many
    from tuillm.core.conversion.plan import resolve_outputs
    from tuillm.tui.cli.progress import CliRenderer

    src = Path(args.model)
    outputs = resolve_outputs(src, args.type, args.output)
    results = convert_many(src, outputs, emit=CliRenderer(quiet=args.quiet), report=getattr(args, "report", False),
                           threads=args.threads)
    for result in results:
        for line in result.report:
            print(line)
        print(result.path)
    return 0
