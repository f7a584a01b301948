"""``tuillm models``: the discovered models with their memory-fit estimate."""

from __future__ import annotations

import argparse
import json
import sys

from tuillm.core.models.catalog import CatalogResult, discover
from tuillm.core.models.metadata import format_bytes, format_params
from tuillm.core.settings import load_config


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list discovered models with memory-fit estimates",
                       description="List the models found in the configured folders, the Hugging Face cache, "
                       "Ollama, LM Studio, and the embedded demo, with the memory each needs.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--ctx", type=int, help="context size for the memory estimate (default: the configured one)")
    return p


def table(result: CatalogResult) -> str:
    headers = ("NAME", "SOURCE", "ARCH", "PARAMS", "QUANT", "SIZE", "CONTEXT", "MEMORY", "FIT")
    rows = [
        (e.name, e.source, e.info.arch, format_params(e.info.params), e.info.file_type,
         format_bytes(e.info.size_bytes), str(e.info.context_length), format_bytes(e.estimate.total_bytes),
         e.estimate.fit)
        for e in result.entries
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [headers, *rows])


def entry_json(entry) -> dict:
    # The catalog name (what `tuillm chat NAME` takes) wins over the file's own general.name.
    return {**info_json(entry.info, entry.estimate), "name": entry.name, "model_name": entry.info.name,
            "source": entry.source}


def info_json(info, est) -> dict:
    data = info.to_json()
    for key in ("layer_bytes", "other_bytes"):  # figures for the estimator, not for people
        data.pop(key, None)
    data.pop("chat_template", None)
    data["has_chat_template"] = info.chat_template is not None
    return {**data, "est_memory_bytes": est.total_bytes, "est_ctx": est.n_ctx, "fits": est.fit}


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.problem:
        print(f"tuillm: {config.problem}", file=sys.stderr)
    if args.ctx:
        config.default_ctx = args.ctx
    result = discover(config=config)
    if args.json:
        print(json.dumps({"models": [entry_json(e) for e in result.entries],
                          "problems": [{"path": p.path, "problem": p.problem} for p in result.problems]},
                         indent=2))
        return 0
    print(table(result))
    for p in result.problems:
        print(f"skipped {p.path}: {p.problem}", file=sys.stderr)
    return 0
