"""``tuillm quantize IN.gguf -o OUT.gguf --type T``: re-quantize a GGUF with llama.cpp's quantizer."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuillm.tui.commands.convert import TYPES, parse_types, run_many


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("quantize", help="re-quantize a GGUF file",
                              description="Re-quantize a GGUF file (best from an f16/bf16/f32 one) with llama.cpp.")
    p.add_argument("model", metavar="IN.gguf", help="input GGUF file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf",
                   help="output file; for several types a folder (names from the input) or a name with {type}")
    p.add_argument("--type", required=True, type=parse_types, metavar="TYPE[,TYPE...]",
                   help=f"output type(s): {', '.join(TYPES)}")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def run(args: argparse.Namespace) -> int:
    from tuillm.core.convert_plan import resolve_outputs
    from tuillm.tui.progress import CliRenderer

    outputs = resolve_outputs(Path(args.model), args.type, args.output)
    return run_many(Path(args.model), outputs, args, CliRenderer(quiet=args.quiet))
