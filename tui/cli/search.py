"""``tuillm search TEXT``: GGUF repositories on the Hugging Face Hub (core.models.hub.api.search)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from tuillm.core.models.hub.api import SEARCH_LIMIT
from tuillm.core.text import safe_line
from tuillm.tui.cli.options import add_options, option_values


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("search", help="find GGUF models on the Hugging Face Hub",
                       description="Search the Hugging Face Hub (HF_ENDPOINT) for GGUF repositories, most downloaded "
                       "first, with their quants. Download one with `tuillm pull REPO[:QUANT]`.")
    p.add_argument("text", metavar="TEXT", help="words in the repository's name, e.g. 'qwen2.5 7b'")
    add_options(p, (SEARCH_LIMIT,), groups=False)
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from tuillm.core.models.hub.api import search

    limit = option_values(args, (SEARCH_LIMIT,))[SEARCH_LIMIT.name]
    hits = search(args.text, limit=limit)
    if args.json:
        print(json.dumps({"repos": [asdict(h) for h in hits]}, indent=2))
        return 0
    if not hits:
        print(safe_line(f"no GGUF repositories match {args.text!r}"))
        return 0
    rows = [("REPO", "DOWNLOADS", "LIKES", "UPDATED", "QUANTS")]
    rows += [(h.repo + (" (gated)" if h.gated else ""), str(h.downloads), str(h.likes), h.last_modified,
              ",".join(h.quants)) for h in hits]
    rows = [tuple(safe_line(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
