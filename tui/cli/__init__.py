"""``tuillm``: no arguments opens the TUI; a subcommand does the same work headless.

Each subcommand lives in ``tuillm.tui.cli.<name>`` with ``register(subparsers)`` and ``run(args) -> int``;
those modules import only light things at top level so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from tuillm.core.errors import TuillmError

# Order is the order of ``tuillm --help``.
COMMANDS = ["models", "info", "convert", "quantize", "chat", "train", "merge", "export_lora"]


def _version() -> str:
    try:
        return version("tuillm")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuillm",
        description="Local LLMs in the terminal: chat, models, GGUF conversion and LoRA training over llama.cpp. "
        "With no command, opens the full-screen app.",
    )
    parser.add_argument("--version", action="version", version=f"tuillm {_version()}")
    parser.add_argument("--config", metavar="PATH", help="use this config file instead of the XDG one")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"tuillm.tui.cli.{name}")
        command = module.register(sub)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from tuillm.tui.app import run_app

            return run_app(config_path=args.config)
        return int(args._run(args) or 0)
    except TuillmError as exc:
        print(f"tuillm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tuillm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tuillm models | head`
        return 0

