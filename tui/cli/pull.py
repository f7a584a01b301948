"""``tuillm pull REPO[:QUANT]``: the repository's quants with their fit, the one chosen and why, then a resumable
download into the Hugging Face cache (core.models.hub.pull)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

from tuillm.core.text import format_bytes, safe_line
from tuillm.tui.cli.options import add_config_option

if TYPE_CHECKING:  # the hub modules load when the command runs: --help stays instant
    from tuillm.core.models.hub.fit import QuantFit
    from tuillm.core.models.hub.pull import Choice


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("pull", help="download a model from the Hugging Face Hub, the quant that fits",
                       description="List a Hub repository's GGUF quants with the memory each needs here, pick the "
                       "best that fits (Q4_K_M when it does, as llama.cpp does) or the one named, and download it "
                       "into the Hugging Face cache, where `tuillm models` finds it. An interrupted download resumes "
                       "when the command runs again; the Hub's sha256 is checked. Gated repos use HF_TOKEN or the "
                       "saved `hf auth login`.")
    p.add_argument("ref", metavar="REPO[:QUANT]", help="e.g. bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M")
    p.add_argument("--file", metavar="NAME", help="download this GGUF file of the repository")
    p.add_argument("--checkpoint", action="store_true",
                   help="download an HF safetensors checkpoint (config, tokenizer, *.safetensors; never pickles) "
                   "for `convert` and `train`")
    p.add_argument("-f", "--force", action="store_true", help="download a quant even when it does not fit")
    p.add_argument("--list", action="store_true", help="list the quants and what would be chosen; download nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_config_option(p)
    return p


def _here(choice: Choice, q: QuantFit) -> str:
    from tuillm.core.models.catalog import hf_cache_dir
    from tuillm.core.models.hub.download import bytes_here

    done = bytes_here(hf_cache_dir(), choice.listing.repo, choice.listing.commit, q.quant.files)
    if not done:
        return ""
    return "downloaded" if done >= q.quant.size else f"{100 * done // max(q.quant.size, 1)}% kept"


def quant_table(choice: Choice) -> str:
    """The quants, the chosen one marked ``*``, with what is on disk already (HERE)."""
    rows = [("", "QUANT", "SIZE", "MEMORY", "FIT", "FILE", "HERE")]
    for q in choice.fits:
        mark = "*" if choice.chosen is not None and q.quant == choice.chosen.quant else ""
        parts = f" (the first of {len(q.quant.files)} parts)" if len(q.quant.files) > 1 else ""
        rows.append((mark, q.quant.quant, format_bytes(q.quant.size), format_bytes(q.fit.estimate.total_bytes),
                     q.fit.verdict, q.quant.name + parts, _here(choice, q)))
    rows = [tuple(safe_line(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def choice_json(choice: Choice) -> dict[str, Any]:
    return {
        "repo": choice.listing.repo, "commit": choice.listing.commit, "reason": choice.reason,
        "checkpoint": choice.checkpoint, "size_bytes": choice.size,
        "files": [f.name for f in choice.files],
        "quants": [{"quant": q.quant.quant, "files": [f.name for f in q.quant.files], "size_bytes": q.quant.size,
                    "est_memory_bytes": q.fit.estimate.total_bytes, "fits": q.fit.verdict,
                    "chosen": choice.chosen is not None and q.quant == choice.chosen.quant} for q in choice.fits],
        "mmproj": [m.name for m in choice.listing.mmproj],
    }


def _say_kept() -> None:
    try:
        print("tuillm: the part downloaded is kept; run the same command again to resume", file=sys.stderr,
              flush=True)
    except (OSError, ValueError):  # the terminal is gone (SIGHUP)
        pass


def run(args: argparse.Namespace) -> int:
    from tuillm.core.models.hub import client
    from tuillm.core.models.hub.pull import choose
    from tuillm.core.models.hub.pull import run as download
    from tuillm.tui.cli.options import read_config
    from tuillm.tui.cli.progress import CliRenderer

    client.check_online()
    choice = choose(args.ref, file=args.file, checkpoint=args.checkpoint, force=args.force,
                    config=read_config(args))
    if not args.json:
        if choice.fits:
            print(quant_table(choice))
        print(safe_line(f"{choice.listing.repo}: {choice.reason}"))
    if args.list:
        if args.json:
            print(json.dumps(choice_json(choice), indent=2))
        return 0
    try:
        result = download(choice, CliRenderer(sys.stderr, quiet=args.quiet or args.json))
    except KeyboardInterrupt:  # Ctrl+C, SIGTERM, SIGHUP: the stop's own line follows (tui.cli.main)
        _say_kept()
        raise
    if args.json:
        print(json.dumps({**choice_json(choice), "path": str(result.path), "model": result.model}, indent=2))
        return 0
    print(safe_line(f"ready: {result.path}"))
    use = "tuillm convert" if choice.checkpoint else "tuillm chat"
    # The name comes from the Hub: quoted for a shell, so a pasted line runs nothing a file name holds (x';rm..).
    print(safe_line(f"use it: {use} {shlex.quote(result.model)}"))
    return 0
