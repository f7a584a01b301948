"""A model's details: what tuillm read from it, its memory estimate, its own load settings, every metadata key of
the file (GGUF header or config.json), and a preview of its chat template.

Every key and value is read from the file: each passes through ``safe_line`` (the template through ``safe_text``)
where it becomes a widget's text, so a hostile header cannot write escape sequences to the terminal.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, Static

from tuillm.core.models.catalog import CatalogEntry
from tuillm.core.models.memory import MemoryEstimate
from tuillm.core.models.metadata import format_params
from tuillm.core.settings import ModelDefaults
from tuillm.core.text import format_bytes, safe_line, safe_text

TEMPLATE_PREVIEW_LINES = 30
VALUE_CHARS = 200  # a long string value (a license text) is cut
# Huge arrays (the vocabulary) say how long they are instead of being listed.
ARRAY_ITEMS = 8


def _value_text(value: Any) -> str:
    # Called only on values the header reader returned, so its module is loaded already.
    from tuillm.convert.gguf_header import SkippedArray

    if isinstance(value, list):
        shown = ", ".join(_value_text(v) for v in value[:ARRAY_ITEMS])
        more = f", … ({len(value)} items)" if len(value) > ARRAY_ITEMS else ""
        return f"[{shown}{more}]"
    if isinstance(value, SkippedArray):  # a long GGUF array the reader skipped
        return f"[{value.count} items]"
    if isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def metadata_fields(path: Path) -> list[tuple[str, str]]:
    """Every key of the GGUF header (the chat template left out: it has its own preview), or of an HF folder's
    config.json. Read problems come back as one row, never raised (the details are only shown)."""
    try:
        if path.is_dir():
            from tuillm.convert.checkpoint import read_json_object

            data: dict[str, Any] = read_json_object(path / "config.json")
            return [(key, _value_text(value)) for key, value in data.items()]
        from tuillm.convert.gguf_header import read_gguf_header

        header = read_gguf_header(path)
        rows = [(key, _value_text(value)) for key, value in header.fields.items() if key != "tokenizer.chat_template"]
        rows.append(("tensors", str(len(header.tensors))))
        return rows
    except Exception as exc:  # any reader error: shown in place of the fields
        return [("metadata", f"could not be read: {exc}")]


def summary_rows(entry: CatalogEntry, est: MemoryEstimate, advice: str, defaults: ModelDefaults,
                 ) -> list[tuple[str, str]]:
    info = entry.info
    own = ", ".join(f"{k}={v}" for k, v in asdict(defaults).items() if v is not None) or "none (the [load] defaults)"
    return [
        ("path", str(info.path)),
        ("found in", entry.source),
        ("format", info.format),
        ("name", info.name),
        ("arch", info.arch),
        ("params", f"{format_params(info.params)} ({info.params:,})"),
        ("file type", info.file_type),
        ("size on disk", format_bytes(info.size_bytes)),
        ("context", f"{info.context_length:,}" if info.context_length else "?"),
        ("layers", str(info.n_layers)),
        ("embedding", str(info.n_embd)),
        ("heads / kv heads", f"{info.n_head} / {info.n_head_kv}"),
        ("vocab", f"{info.vocab_size:,}"),
        ("memory", f"{format_bytes(est.total_bytes)} at ctx {est.n_ctx:,}: {est.fit} (weights "
                   f"{format_bytes(est.weights_bytes)}, KV {format_bytes(est.kv_bytes)}, compute "
                   f"{format_bytes(est.compute_bytes)}; {format_bytes(est.available_bytes)} available)"),
        ("advice", advice),
        ("own load settings", own),
    ]


def _table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(Text(safe_line(key)), Text(safe_line(value)))
    return table


def template_preview(template: str | None) -> str:
    if not template:
        return "(none: llama.cpp falls back to ChatML)"
    lines = safe_text(template).splitlines()
    more = len(lines) - TEMPLATE_PREVIEW_LINES
    return "\n".join(lines[:TEMPLATE_PREVIEW_LINES]) + (f"\n… ({more} more lines)" if more > 0 else "")


class ModelDetails(VerticalScroll):
    """Scrolls with the arrow keys and PageUp/PageDown."""

    DEFAULT_CSS = """
    ModelDetails { height: 1fr; }
    ModelDetails .details-heading { text-style: bold; color: $accent; padding-top: 1; }
    ModelDetails #details-template { color: $text-muted; }
    """

    def __init__(self, summary: list[tuple[str, str]], fields: list[tuple[str, str]], template: str | None,
                 *, id: str | None = None) -> None:
        super().__init__(id=id, can_focus=True)
        self.summary = summary
        self.fields = fields
        self.template = template

    def compose(self) -> ComposeResult:
        yield Static(_table(self.summary), id="details-summary")
        yield Label("Chat template", classes="details-heading")
        yield Static(template_preview(self.template), id="details-template", markup=False)
        yield Label(f"Metadata ({len(self.fields)} keys)", classes="details-heading")
        yield Static(_table(self.fields), id="details-fields")
