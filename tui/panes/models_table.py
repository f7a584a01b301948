"""The Models pane's table: one row per model with its fit, the Name column taking the width the others leave.

Pure row text (``row_cells``, ``matches``, ``format_context``) is kept apart from the widget so tests and the
details screen can use it without an app. Names, arches and quant labels come from files: ``show`` makes every cell
one terminal-safe line of plain text (a ``str`` cell would be read as Rich markup).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable

from tuillm.core.models.catalog import CatalogEntry
from tuillm.core.models.memory import MemoryEstimate
from tuillm.core.models.metadata import format_params
from tuillm.core.text import format_bytes, safe_line

# (key, header); "name" takes whatever width the others leave.
COLUMNS = (
    ("name", "Name"),
    ("arch", "Arch"),
    ("params", "Params"),
    ("quant", "Quant"),
    ("size", "Size"),
    ("context", "Context"),
    ("memory", "Est. mem"),
    ("fit", "Fit"),
)
FIT_STYLES = {"fits": "bold green", "tight": "bold yellow", "too big": "bold red"}
MIN_NAME_WIDTH = 12
# DataTable pads each cell by one column on either side; the vertical scrollbar is kept reserved so the
# layout does not jump when the list grows past the screen.
CELL_PADDING = 2
SCROLLBAR = 2
OWN_MARK = "*"  # after the name of a model with its own load settings
# Too narrow for every column (60 over SSH): these go first, so Name and Fit (what the row is for) always stay
# in sight; Info (i) shows them all.
DROP_ORDER = ("context", "arch", "params", "size", "memory", "quant")


def format_context(n: int) -> str:
    if n <= 0:
        return "?"
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def row_cells(entry: CatalogEntry, est: MemoryEstimate, own_settings: bool = False) -> dict[str, str | Text]:
    info = entry.info
    return {
        # Marked: estimated at its own settings, not the defaults.
        "name": entry.name + (OWN_MARK if own_settings else ""),
        "arch": info.arch,
        "params": format_params(info.params),
        "quant": info.file_type,
        "size": format_bytes(info.size_bytes),
        "context": format_context(info.context_length),
        "memory": format_bytes(est.total_bytes),
        "fit": Text(est.fit, style=FIT_STYLES.get(est.fit, "")),
    }


def matches(entry: CatalogEntry, query: str) -> bool:
    """Every word of ``query`` appears (case-insensitive) in the name, arch, quant, source or path."""
    info = entry.info
    haystack = " ".join((entry.name, info.arch, info.file_type, entry.source, str(info.path))).lower()
    return all(word in haystack for word in query.lower().split())


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _safe(cell: str | Text) -> Text:
    """The cell as one line of plain text without control sequences (a Text keeps its style)."""
    if isinstance(cell, Text):
        return Text(safe_line(cell.plain), style=cell.style)
    return Text(safe_line(cell))


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def fitting_columns(widths: dict[str, int], width: int) -> list[tuple[str, str]]:
    """The columns that leave the name at least ``MIN_NAME_WIDTH`` in ``width``, dropping in ``DROP_ORDER``."""
    dropped: set[str] = set()
    for key in (None, *DROP_ORDER):
        if key is not None:
            dropped.add(key)
        kept = [(k, header) for k, header in COLUMNS if k not in dropped]
        others = sum(widths[k] for k, _ in kept if k != "name")
        if width - SCROLLBAR - CELL_PADDING * len(kept) - others >= MIN_NAME_WIDTH:
            break
    return kept


@dataclass(frozen=True)
class Row:
    path: Path  # the row key
    cells: dict[str, str | Text]


class ModelsTable(DataTable[str | Text]):
    """Rows keyed by the model's path; ``show`` rebuilds them for the table's current width."""

    def __init__(self, *, id: str | None = None) -> None:
        # "renderable": the Fit colour stays visible on the highlighted row.
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")

    def show(self, rows: list[Row], width: int, select: Path | None = None) -> bool:
        """(Re)build the table for ``width`` columns (80 over SSH), the cursor on ``select`` if it is listed, else
        where it was; True when ``select`` was found."""
        rows = [Row(row.path, {key: _safe(cell) for key, cell in row.cells.items()}) for row in rows]
        widths = {key: max([len(header)] + [len(_plain(row.cells[key])) for row in rows]) for key, header in COLUMNS}
        columns = fitting_columns(widths, width)
        others = sum(widths[key] for key, _ in columns if key != "name")
        room = width - SCROLLBAR - CELL_PADDING * len(columns) - others
        name_width = max(MIN_NAME_WIDTH, min(widths["name"], room))
        cursor = self.cursor_row
        found = next((i for i, row in enumerate(rows) if row.path == select), None) if select else None
        if found is not None:
            cursor = found
        self.clear(columns=True)
        for key, header in columns:
            self.add_column(header, key=key, width=name_width if key == "name" else widths[key])
        for row in rows:
            cells = {**row.cells, "name": Text(_truncate(_plain(row.cells["name"]), name_width))}
            self.add_row(*(cells[key] for key, _ in columns), key=str(row.path))
        if rows:
            self.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        return found is not None

    def highlighted_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
