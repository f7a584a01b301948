"""``tuillm quantize IN.gguf -o OUT.gguf --type T``: re-quantize a GGUF with llama.cpp's quantizer."""

from __future__ import annotations

import argparse
from dataclasses import replace

from tuillm.convert.types import TYPE_NAMES
from tuillm.core.conversion.plan import CONVERT_THREADS

# `run` is convert's: convert_many re-quantizes when its source is a GGUF (there is no --report here).
from tuillm.tui.cli.convert import add_quant_options, parse_types
from tuillm.tui.cli.convert import run as run
from tuillm.tui.cli.options import add_options


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("quantize", help="re-quantize a GGUF file",
                              description="Re-quantize a GGUF file (best from an f16/bf16/f32 one) with llama.cpp.")
    p.add_argument("model", metavar="IN.gguf", help="input GGUF file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf",
                   help="output file; for several types a folder (names from the input) or a name with {type}")
    p.add_argument("--type", required=True, type=parse_types, metavar="TYPE[,TYPE...]",
                   help=f"output type(s): {', '.join(TYPE_NAMES)}")
    add_options(p, [replace(CONVERT_THREADS, help="threads (auto: all cores)")], groups=False)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output file")
    add_quant_options(p)
    p.set_defaults(report=False)  # convert's run reads it
    return p
