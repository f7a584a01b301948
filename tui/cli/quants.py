"""``tuillm quants SOURCE [--types …] [--ctx N] [--keep best|all|none|TYPE] [--json]``: the quality sweep.

Every type is written and measured (``tuillm.core.conversion.sweep``); the table and the recommendation go to
stdout (or one JSON document with ``--json``), progress to stderr.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from tuillm.core.conversion.sweep_options import SWEEP_OPTIONS
from tuillm.core.paths import expand_user
from tuillm.tui.cli.options import add_config_option

if TYPE_CHECKING:  # the sweep's module is imported when a sweep runs: --help stays instant
    from tuillm.core.conversion.sweep import SweepResult

def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from tuillm.tui.cli.options import add_options

    p = sub.add_parser("quants", help="quantize to several types, measure each, and recommend one for this machine",
                       description="Quantize SOURCE to each type (one 16-bit intermediate shared), measure each "
                       "file against the 16-bit model on a held-out text (KL divergence, top-1 agreement, "
                       "perplexity ratio) and its decode speed here, and recommend the best-quality type that "
                       "fits this machine at the context, with headroom.")
    p.add_argument("source", metavar="SOURCE",
                   help="HF checkpoint folder, a GGUF file (re-quantized), `demo`, or a name from `tuillm models`")
    add_options(p, SWEEP_OPTIONS, groups=False)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_config_option(p)
    return p


def table(result: SweepResult) -> str:
    """The rows as aligned columns, the recommended type marked with ``*``."""
    from tuillm.core.conversion.sweep import COLUMNS, row_cells

    rows = [row_cells(r) for r in result.rows]
    rows = [(r[0] + (" *" if r[0] == result.recommended else ""), *r[1:]) for r in rows]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [COLUMNS, *rows])


def summary(result: SweepResult) -> list[str]:
    """What the figures are against, and the recommendation in words."""
    from tuillm.core.text import format_bytes

    lines = [f"KL and TOP-1 against {result.baseline} over {result.tokens} tokens, PPL as a ratio to its "
             f"perplexity; TOK/S: decode with {result.threads} threads on the CPU; importance matrix: "
             f"{result.imatrix or 'none'}"]
    if result.recommended is None:
        lines.append(f"recommended: none: no type fits with headroom at {result.n_ctx} tokens "
                     f"({format_bytes(result.available_bytes)} available); try a smaller --ctx")
    else:
        lines.append(f"recommended (*): {result.recommended} (the lowest KL of the types that fit at {result.n_ctx} "
                     f"tokens, {format_bytes(result.available_bytes)} available)")
    return lines


def run(args: argparse.Namespace) -> int:
    from tuillm.core.conversion.sweep import run_sweep
    from tuillm.core.conversion.sweep_options import sweep_request
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.text import safe_line
    from tuillm.tui.cli.options import option_values, read_config
    from tuillm.tui.cli.progress import CliRenderer

    values = option_values(args, SWEEP_OPTIONS)  # the flags first: a bad one is refused before any lookup
    config = read_config(args)
    models_folder = expand_user(config.model_dirs[0]) if config.model_dirs else None
    request = sweep_request(resolve_model(args.source, config), values, models_folder)
    result = run_sweep(request, config=config, emit=CliRenderer(quiet=args.quiet))
    if args.json:  # json.dumps escapes control characters: nothing raw reaches the terminal
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(safe_line(str(request.source)))
    print(table(result))
    for line in summary(result):
        print(safe_line(line))
    for path in result.kept:
        print(safe_line(f"kept {path}"))
    return 0
