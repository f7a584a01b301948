"""The Models pane: a read-only table of the discovered models with their memory fit.

Discovery reads file headers (and may walk large folders), so it runs in a thread worker and reports back with
typed messages; the event loop only fills the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Static
from textual.worker import get_current_worker

from tuillm.core.catalog import CatalogEntry, CatalogResult, discover
from tuillm.core.metadata import format_bytes, format_params
from tuillm.tui.panes.registry import Session

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


def format_context(n: int) -> str:
    if n <= 0:
        return "?"
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def row_cells(entry: CatalogEntry) -> dict[str, str | Text]:
    info, est = entry.info, entry.estimate
    return {
        "name": entry.name,
        "arch": info.arch,
        "params": format_params(info.params),
        "quant": info.file_type,
        "size": format_bytes(info.size_bytes),
        "context": format_context(info.context_length),
        "memory": format_bytes(est.total_bytes),
        "fit": Text(est.fit, style=FIT_STYLES.get(est.fit, "")),
    }


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


class ModelsPane(Vertical):
    HELP_TITLE = "Models pane"
    BINDINGS = [Binding("ctrl+r", "refresh", "Refresh", tooltip="Scan the model folders again")]

    class CatalogLoaded(Message):
        def __init__(self, result: CatalogResult) -> None:
            super().__init__()
            self.result = result

    class CatalogFailed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    class ModelChosen(Message):
        """Enter on a row: the app opens the Chat pane with this model."""

        def __init__(self, name: str, path: Path) -> None:
            super().__init__()
            self.name = name
            self.path = path

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.result: CatalogResult | None = None
        self.loading_catalog = False

    def compose(self) -> ComposeResult:
        yield Label("Discovering models…", id="models-summary")
        # "renderable": the Fit colour stays visible on the highlighted row.
        table: DataTable[str | Text] = DataTable(id="models-table", cursor_type="row", zebra_stripes=True,
                                                 cursor_foreground_priority="renderable")
        yield table
        yield Static(id="models-problems", markup=False)

    def on_mount(self) -> None:
        self.query_one("#models-problems").display = False
        self._fill_table()
        self.action_refresh()

    def focus_default(self) -> None:
        self.query_one(DataTable).focus()

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Refresh models", "Scan the model folders again", self.action_refresh)

    def action_refresh(self) -> None:
        self.loading_catalog = True
        self.query_one("#models-summary", Label).update("Discovering models…")
        self._discover()

    @work(thread=True, exclusive=True, group="catalog", exit_on_error=False)
    def _discover(self) -> None:
        session = self.session
        try:
            result = discover(session.model_dirs, config=session.config, available=session.available_ram)
        except Exception as exc:  # discover reports bad files itself; anything else is a bug, shown, not fatal
            message: Message = self.CatalogFailed(f"{exc.__class__.__name__}: {exc}")
        else:
            message = self.CatalogLoaded(result)
        if not get_current_worker().is_cancelled:  # a newer refresh replaced this one
            self.post_message(message)

    def on_models_pane_catalog_loaded(self, event: CatalogLoaded) -> None:
        self.loading_catalog = False
        self.result = event.result
        self._fill_table()
        problems = event.result.problems
        n = len(event.result.entries)
        summary = f"{n} model{'s' if n != 1 else ''}"
        if problems:
            summary += f" · {len(problems)} unreadable"
        # The estimate is at the configured context, capped at each model's own maximum.
        ctx = format_context(self.session.config.default_ctx)
        self.query_one("#models-summary", Label).update(f"{summary} · memory estimated at {ctx} context")
        box = self.query_one("#models-problems", Static)
        box.display = bool(problems)
        if problems:
            # File name and problem first: the folder part is what gets cut off at 80 columns.
            box.update("Could not read:\n" + "\n".join(
                f"{Path(p.path).name}: {p.problem} (in {Path(p.path).parent})" for p in problems))
            self.notify(
                f"{len(problems)} model file{'s' if len(problems) != 1 else ''} could not be read "
                "(listed below the table)",
                title="Models",
                severity="warning",
            )

    def on_models_pane_catalog_failed(self, event: CatalogFailed) -> None:
        self.loading_catalog = False
        self.query_one("#models-summary", Label).update("Model discovery failed")
        self.notify(event.error, title="Model discovery failed", severity="error")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        entries = self.result.entries if self.result else []
        entry = next((e for e in entries if str(e.info.path) == event.row_key.value), None)
        if entry is not None:
            self.post_message(self.ModelChosen(entry.name, entry.info.path))

    def on_resize(self) -> None:
        if self.result is not None:
            self._fill_table()

    def _fill_table(self) -> None:
        """(Re)build the table so that the Name column gets the width the others leave (80 columns over SSH)."""
        table = self.query_one(DataTable)
        rows = [(entry, row_cells(entry)) for entry in (self.result.entries if self.result else [])]
        widths = {key: max([len(header)] + [len(_plain(cells[key])) for _, cells in rows])
                  for key, header in COLUMNS}
        others = sum(w for key, w in widths.items() if key != "name")
        room = self.size.width - SCROLLBAR - CELL_PADDING * len(COLUMNS) - others
        name_width = max(MIN_NAME_WIDTH, min(widths["name"], room))
        cursor = table.cursor_row
        table.clear(columns=True)
        for key, header in COLUMNS:
            table.add_column(header, key=key, width=name_width if key == "name" else widths[key])
        for entry, cells in rows:
            cells["name"] = _truncate(entry.name, name_width)
            table.add_row(*(cells[key] for key, _ in COLUMNS), key=str(entry.info.path))
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
