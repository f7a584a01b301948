"""``tuillm convert HF_DIR -o OUT.gguf --type T [--report]``: an HF checkpoint folder to one GGUF file."""

from __future__ import annotations

import argparse
from pathlib import Path

# Kept in sync with tuillm.convert.quantize.OUTPUT_TYPES (not imported: --help must stay instant).
TYPES = ("f32", "f16", "bf16", "q8_0", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q4_k_m",
         "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("convert", help="convert an HF checkpoint folder to GGUF (optionally quantized)",
                              description="Convert an HF checkpoint folder (safetensors) to a GGUF file. f32, f16, "
                              "bf16 and q8_0 are written directly; other types go through llama.cpp's quantizer.")
    p.add_argument("model", metavar="HF_DIR", help="HF checkpoint folder (config.json, *.safetensors, tokenizer)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf", help="output file")
    p.add_argument("--type", default="f16", type=str.lower, choices=TYPES, metavar="TYPE",
                   help=f"output type (default f16): {', '.join(TYPES)}")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: up to 4)")
    p.add_argument("--report", action="store_true",
                   help="afterwards, compare the result with the original on a built-in text (needs transformers)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def run(args: argparse.Namespace) -> int:
    from tuillm.core.convert_job import convert_checkpoint, report_quality
    from tuillm.tui.progress import CliRenderer

    emit = CliRenderer(quiet=args.quiet)
    out = convert_checkpoint(Path(args.model), Path(args.output), args.type, emit=emit, threads=args.threads)
    if args.report:
        for line in report_quality(Path(args.model), out, args.type):
            print(line)
    print(out)
    return 0
