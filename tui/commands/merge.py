"""``tuillm merge``: merge a LoRA adapter into its base and write a GGUF (not built yet: refused with one line)."""

from __future__ import annotations

import argparse

from tuillm.tui.commands.unavailable import refuse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("merge", help="merge a LoRA adapter into its base as a GGUF (not available yet)")
    p.add_argument("base", metavar="BASE")
    p.add_argument("adapter", metavar="ADAPTER_DIR")
    p.add_argument("-o", "--output", metavar="OUT.gguf", required=True)
    p.add_argument("--type", default="q8_0", help="output type (default q8_0)")
    return p


def run(args: argparse.Namespace) -> int:
    raise refuse("merge")
