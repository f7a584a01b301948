"""The server's log: one row per request it answered (time, status, tokens, seconds, model, request), the latest
``LOG_ROWS`` of them, and the row under the cursor in full below the table; Esc closes."""

from __future__ import annotations

import time
from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static
from textual.widgets.data_table import RowKey

from tuillm.core.serve.guard import RequestRecord
from tuillm.core.text import safe_line, shown
from tuillm.tui import keymap
from tuillm.tui.serve_control import LOG_ROWS

# The short columns first and the long ones cut: the request (up to 200 characters) came first, and at 60 columns
# Model and Status were some 200 presses of → away. The row under the cursor is shown whole below the table.
COLUMNS = ("Time", "Status", "Tokens", "Seconds", "Model", "Request")
MODEL_CUT = 32
REQUEST_CUT = 48


def row(record: RequestRecord) -> tuple[str, ...]:
    tokens = f"{record.prompt_tokens}+{record.completion_tokens}" if record.prompt_tokens else ""
    seconds = f"{record.seconds:.2f}" + (f" (load {record.load_s:.2f})" if record.load_s else "")
    # shown: what a client sent, escaped as sent (a stripped escape would read as another name), and cut
    return (time.strftime("%H:%M:%S", time.localtime(record.when)), str(record.status), tokens, seconds,
            shown(record.model, MODEL_CUT), shown(f"{record.method} {record.path}", REQUEST_CUT))


def detail(record: RequestRecord) -> str:
    """One request in full (as far as the log keeps it): status and error, model, request line (the long request
    last: the lines below the table may not hold it all)."""
    parts = [f"{record.status} {shown(record.error, 400)}" if record.error else str(record.status)]
    if record.model:
        parts.append(f"model {shown(record.model, 200)}")
    parts.append(shown(f"{record.method} {record.path}", 200))
    return " · ".join(parts)


def where(url: str | None) -> str:
    return f"serving at {url}" if url else "not running (palette: Start server)"


class ServeLogScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ServeLogScreen { align: center middle; }
    ServeLogScreen > Vertical { width: 96%; height: 90%; border: round $accent; background: $surface; }
    ServeLogScreen DataTable { height: 1fr; }
    #serve-log-detail { height: auto; max-height: 4; color: $text-muted; }
    """
    BINDINGS = keymap.SERVE_LOG

    def __init__(self, records: list[RequestRecord], url: str | None, limit: int = LOG_ROWS) -> None:
        """``limit``: rows kept, the oldest dropped first (the app keeps as many: a log left open on a busy
        server grew without end)."""
        super().__init__()
        self._initial = records[-limit:]
        self._url = url
        self._rows: deque[tuple[RowKey, RequestRecord]] = deque()
        self._limit = limit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe_line(f"Server log — {where(self._url)}"), id="serve-log-title", markup=False)
            yield DataTable(id="serve-log", cursor_type="row", zebra_stripes=True)
            yield Static("", id="serve-log-detail", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        for record in self._initial:
            self._rows.append((table.add_row(*row(record)), record))
        # On the newest, as a log is read (the oldest of a thousand rows is the least likely to be wanted).
        table.move_cursor(row=table.row_count - 1)
        table.focus()
        self._show_detail()

    def set_url(self, url: str | None) -> None:
        """The server started or stopped while the log is open."""
        self._url = url
        self.query_one("#serve-log-title", Label).update(safe_line(f"Server log — {where(url)}"))

    def add(self, record: RequestRecord) -> None:
        table = self.query_one(DataTable)
        following = table.cursor_row >= table.row_count - 1
        self._rows.append((table.add_row(*row(record)), record))
        if len(self._rows) > self._limit:
            key, _ = self._rows.popleft()
            reading = table.cursor_row
            table.remove_row(key)
            if not following and reading > 0:  # the row being read moved up by one: the cursor goes with it
                table.move_cursor(row=reading - 1)
        if following:  # a row the user went up to read stays under the cursor
            table.move_cursor(row=table.row_count - 1)
        self._show_detail()

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.query_one(DataTable)
        text = detail(self._rows[table.cursor_row][1]) if 0 <= table.cursor_row < len(self._rows) else ""
        self.query_one("#serve-log-detail", Static).update(text)
