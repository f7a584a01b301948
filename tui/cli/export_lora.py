"""``tuillm export-lora ADAPTER_DIR --base BASE -o ADAPTER.gguf``: a LoRA adapter as a GGUF adapter for llama.cpp."""

from __future__ import annotations

import argparse

from tuillm.convert.types import CONVERT_DEFAULT, UNQUANTIZED_TYPE_NAMES


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export-lora", help="export a LoRA adapter as a GGUF adapter for llama.cpp",
                       description="Write a GGUF LoRA adapter that llama.cpp applies on top of the base GGUF: "
                       "`tuillm chat BASE.gguf --lora ADAPTER.gguf`.")
    p.add_argument("adapter", metavar="ADAPTER_DIR", help="the adapter folder written by `tuillm train`")
    p.add_argument("--base", metavar="BASE", required=True,
                   help="the base the adapter was trained on: HF folder, GGUF, name, or demo")
    p.add_argument("-o", "--output", metavar="ADAPTER.gguf", required=True, help="output file")
    p.add_argument("--type", default=CONVERT_DEFAULT, type=str.lower, choices=UNQUANTIZED_TYPE_NAMES,
                   help="tensor type (default f16)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output file")
    return p


def run(args: argparse.Namespace) -> int:
    from tuillm.core.files import named_path
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.train.merge import export_lora
    from tuillm.tui.cli.progress import CliRenderer, print_path

    out = export_lora(named_path(args.adapter, "adapter folder"), resolve_model(args.base),
                      named_path(args.output, "output file"),
                      args.type, emit=CliRenderer(quiet=args.quiet), force=args.force)
    print_path(out)
    return 0
