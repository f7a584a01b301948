"""The quality sweep's table (the columns and cells of ``tuillm quants``), the recommended row marked and under
the cursor; the highlighted row is the type "Keep" keeps."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tuillm.core.conversion.sweep import COLUMNS, SweepResult, row_cells

CHOSEN_STYLE = "bold green"


class QuantTable(DataTable[Text]):
    DEFAULT_CSS = """
    QuantTable { height: auto; max-height: 10; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.result: SweepResult | None = None

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show(self, result: SweepResult) -> None:
        self.result = result
        self.clear()
        for row in result.rows:
            chosen = row.out_type == result.recommended
            cells = row_cells(row)
            label = cells[0] + (" ★" if chosen else "")
            style = CHOSEN_STYLE if chosen else ""
            self.add_row(*(Text(c, style=style) for c in (label, *cells[1:])), key=row.out_type)
        if result.recommended is not None:
            self.move_cursor(row=self.get_row_index(result.recommended))

    @property
    def highlighted_type(self) -> str | None:
        if self.result is None or not self.result.rows or self.cursor_row < 0:
            return None
        return self.result.rows[min(self.cursor_row, len(self.result.rows) - 1)].out_type
