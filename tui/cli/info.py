"""``tuillm info``: metadata of a GGUF file or an HF checkpoint folder, and its fit for the chat's load."""

from __future__ import annotations

import argparse
import json

from tuillm.core.models.catalog import resolve_model
from tuillm.core.models.fit import Fit, advice, load_fit
from tuillm.core.models.memory import fitting_quants, max_context
from tuillm.core.models.metadata import ModelInfo, format_params, read_info
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui.cli.models import add_ctx_flag, ctx_flag, info_json
from tuillm.tui.cli.options import add_config_option, read_config


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="metadata of a GGUF file or an HF checkpoint folder",
                       description="Show a model's metadata (read from headers, no weights loaded) and the "
                       "memory it needs for the load `tuillm chat` would do.")
    p.add_argument("model", metavar="PATH_OR_NAME", help="a GGUF file, an HF folder, a name from `tuillm models`, "
                   "or demo")
    add_ctx_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    add_config_option(p)
    return p


def describe(info: ModelInfo, fit: Fit) -> list[str]:
    """The text report, one terminal-safe line per field (the name, arch and path come from the file)."""
    est = fit.estimate
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
        f"{format_bytes(est.available_bytes)} available",
        f"advice         {advice(info, fit)}",
    ]
    return [safe_line(line) for line in lines]


def run(args: argparse.Namespace) -> int:
    ctx = ctx_flag(args)
    config = read_config(args)
    info = read_info(resolve_model(args.model, config))
    fit = load_fit(info, config, n_ctx=ctx)
    if not args.json:
        print("\n".join(describe(info, fit)))
        return 0
    data = info_json(info, fit.estimate)
    available, options = fit.estimate.available_bytes, fit.options
    # The figures behind the advice line, for scripts.
    if info.format == "gguf":
        data["max_ctx_that_fits"] = max_context(info, available, kv_type=options.kv_type,
                                                flash_attn=options.flash_attn)
    else:
        data["quants_that_fit"] = fitting_quants(info, options.n_ctx, available)
    print(json.dumps(data, indent=2))  # escapes every control character (\u001b): nothing raw reaches the terminal
    return 0
