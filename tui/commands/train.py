"""``tuillm train``: LoRA fine-tuning (not built yet: refused with one line)."""

from __future__ import annotations

import argparse

from tuillm.tui.commands.unavailable import refuse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a LoRA adapter (not available yet)")
    p.add_argument("base", metavar="BASE", help="base model: HF folder, GGUF, name, or demo")
    p.add_argument("--data", metavar="FILE.jsonl", required=True, help="training data")
    p.add_argument("-o", "--output", metavar="ADAPTER_DIR", required=True, help="adapter folder to write")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-len", type=int, default=512)
    return p


def run(args: argparse.Namespace) -> int:
    raise refuse("train")
