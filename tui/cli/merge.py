"""``tuillm merge BASE ADAPTER_DIR -o OUT.gguf --type q8_0``: the adapter merged into its base, as one GGUF."""

from __future__ import annotations

import argparse
from dataclasses import replace

from tuillm.convert.types import MERGE_DEFAULT, TYPE_NAMES
from tuillm.core.conversion.plan import CONVERT_THREADS
from tuillm.tui.cli.options import add_options, option_values


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("merge", help="merge a LoRA adapter into its base and write a GGUF",
                       description="Merge a LoRA adapter (PEFT folder) into its base with peft, then convert the "
                       "result to GGUF of any type of `tuillm convert`. The temporary merged checkpoint (2 bytes a "
                       "weight; 4 for an f32 output) is written beside OUT.gguf and removed afterwards.")
    p.add_argument("base", metavar="BASE", help="the base the adapter was trained on: HF folder, GGUF, name, demo")
    p.add_argument("adapter", metavar="ADAPTER_DIR", help="the adapter folder written by `tuillm train`")
    p.add_argument("-o", "--output", metavar="OUT.gguf", required=True, help="output file")
    p.add_argument("--type", default=MERGE_DEFAULT, type=str.lower, choices=TYPE_NAMES, metavar="TYPE",
                   help=f"output type (default {MERGE_DEFAULT}): {', '.join(TYPE_NAMES)}")
    add_options(p, [replace(CONVERT_THREADS, help="converter threads (auto: up to 4)")], groups=False)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing output file")
    return p


def run(args: argparse.Namespace) -> int:
    from tuillm.core.files import named_path
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.train.merge import merge
    from tuillm.tui.cli.progress import CliRenderer, print_path

    threads = option_values(args, [CONVERT_THREADS])["threads"]
    out = merge(resolve_model(args.base), named_path(args.adapter, "adapter folder"),
                named_path(args.output, "output file"), args.type, emit=CliRenderer(quiet=args.quiet),
                threads=threads, force=args.force)
    print_path(out)
    return 0
