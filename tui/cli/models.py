"""``tuillm models``: the discovered models with their fit for the load ``tuillm chat`` would do."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuillm.core.llama.options import LOAD_OPTIONS
from tuillm.core.models.catalog import CatalogEntry, CatalogResult, discover
from tuillm.core.models.memory import MemoryEstimate
from tuillm.core.models.metadata import ModelInfo, format_params
from tuillm.core.options import option_map
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui.cli.options import add_config_option, add_options, option_values, read_config

# The context flag of `models` and `info`: the chat's own --ctx declaration (the estimate is for that load).
CTX = option_map(LOAD_OPTIONS)["n_ctx"]


def add_ctx_flag(parser: argparse.ArgumentParser) -> None:
    add_options(parser, (CTX,), defaults=False, groups=False)


def ctx_flag(args: argparse.Namespace) -> int | None:
    """The --ctx given (checked once, by its declaration), or None: the settings' context applies."""
    return option_values(args, (CTX,))[CTX.name]


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list discovered models with memory-fit estimates",
                       description="List the models found in the configured folders, the Hugging Face cache, "
                       "Ollama, LM Studio, and the embedded demo, with the memory each needs for the load "
                       "`tuillm chat` would do (the configured context, or the model's own).")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_ctx_flag(p)
    add_config_option(p)
    return p


def table(result: CatalogResult) -> str:
    """The models as aligned columns; every cell one terminal-safe line (a name or a file name comes from outside)."""
    headers = ("NAME", "SOURCE", "ARCH", "PARAMS", "QUANT", "SIZE", "CONTEXT", "MEMORY", "FIT")
    rows = [
        tuple(safe_line(cell) for cell in (
            e.name, e.source, e.info.arch, format_params(e.info.params), e.info.file_type,
            format_bytes(e.info.size_bytes), str(e.info.context_length), format_bytes(e.estimate.total_bytes),
            e.estimate.fit))
        for e in result.entries
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [headers, *rows])


def entry_json(entry: CatalogEntry) -> dict[str, Any]:
    # The catalog name (what `tuillm chat NAME` takes) wins over the file's own general.name.
    return {**info_json(entry.info, entry.estimate), "name": entry.name, "model_name": entry.info.name,
            "source": entry.source}


def info_json(info: ModelInfo, est: MemoryEstimate) -> dict[str, Any]:
    data = info.to_json()
    for key in ("layer_bytes", "other_bytes"):  # figures for the estimator, not for people
        data.pop(key, None)
    data.pop("chat_template", None)
    data["has_chat_template"] = info.chat_template is not None
    return {**data, "est_memory_bytes": est.total_bytes, "est_ctx": est.n_ctx, "fits": est.fit}


def run(args: argparse.Namespace) -> int:
    ctx = ctx_flag(args)
    config = read_config(args)
    result = discover(config=config, n_ctx=ctx)  # --ctx: every row's context, as `tuillm chat --ctx` loads
    if args.json:  # json.dumps escapes every control character (\u001b): nothing raw reaches the terminal
        print(json.dumps({"models": [entry_json(e) for e in result.entries],
                          "problems": [{"path": p.path, "problem": p.problem} for p in result.problems]},
                         indent=2))
        return 0
    print(table(result))
    for p in result.problems:
        print(safe_line(f"skipped {p.path}: {p.problem}"), file=sys.stderr)
    return 0
