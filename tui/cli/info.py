"""``tuillm info``: metadata of a GGUF file or an HF checkpoint folder, and what fits."""

from __future__ import annotations

import argparse
import json

from tuillm.core.models.catalog import resolve_model
from tuillm.core.models.hardware import available_ram
from tuillm.core.models.memory import estimate, max_context, quant_fits
from tuillm.core.models.metadata import ModelInfo, format_bytes, format_params, read_info
from tuillm.core.settings import load_config
from tuillm.tui.cli.models import info_json


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="metadata of a GGUF file or an HF checkpoint folder",
                       description="Show a model's metadata (read from headers, no weights loaded) and the "
                       "memory it needs at a context size.")
    p.add_argument("model", metavar="PATH_OR_NAME", help="a GGUF file, an HF folder, a name from `tuillm models`, "
                   "or demo")
    p.add_argument("--ctx", type=int, help="context size for the memory estimate")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def describe(info: ModelInfo, est, available: int) -> list[str]:
    lines = [
        f"path           {info.path}",
        f"format         {info.format}",
        f"name           {info.name}",
        f"arch           {info.arch}",
        f"params         {format_params(info.params)} ({info.params:,})",
        f"file type      {info.file_type}",
        f"size on disk   {format_bytes(info.size_bytes)}",
        f"context        {info.context_length}",
        f"layers         {info.n_layers}",
        f"embedding      {info.n_embd}",
        f"heads / kv     {info.n_head} / {info.n_head_kv}",
        f"vocab          {info.vocab_size}",
        f"chat template  {'yes' if info.chat_template else 'no'}",
        f"memory         {format_bytes(est.total_bytes)} at ctx {est.n_ctx} (weights {format_bytes(est.weights_bytes)}"
        f", KV {format_bytes(est.kv_bytes)}, compute {format_bytes(est.compute_bytes)}): {est.fit}, "
        f"{format_bytes(available)} available",
    ]
    if info.format == "gguf":
        lines.append(f"largest ctx    {max_context(info, available)} fits with headroom")
    else:
        fitting = [q for q, e in quant_fits(info, est.n_ctx, available) if e.fit == "fits"]
        lines.append(f"quants that fit {', '.join(fitting) if fitting else 'none'}")
    return lines


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    info = read_info(resolve_model(args.model, config))
    available = available_ram()
    est = estimate(info, args.ctx, available=available)
    if args.json:
        data = info_json(info, est)
        if info.format == "gguf":
            data["max_ctx_that_fits"] = max_context(info, available)
        else:
            data["quants_that_fit"] = [q for q, e in quant_fits(info, est.n_ctx, available) if e.fit == "fits"]
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(describe(info, est, available)))
    return 0
