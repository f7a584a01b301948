"""``tuillm export-lora``: write a LoRA adapter as a GGUF adapter (not built yet: refused with one line)."""

from __future__ import annotations

import argparse

from tuillm.tui.commands.unavailable import refuse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export-lora", help="export a LoRA adapter as a GGUF adapter (not available yet)")
    p.add_argument("adapter", metavar="ADAPTER_DIR")
    p.add_argument("--base", metavar="BASE", required=True)
    p.add_argument("-o", "--output", metavar="ADAPTER.gguf", required=True)
    return p


def run(args: argparse.Namespace) -> int:
    raise refuse("export-lora")
