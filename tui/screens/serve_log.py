"""The server's log: one row per request it answered (time, request, model, tokens, seconds, status); Esc closes."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tuillm.core.serve.guard import RequestRecord
from tuillm.core.text import safe_line, shown
from tuillm.tui import keymap

COLUMNS = ("Time", "Request", "Model", "Tokens", "Seconds", "Status")


def row(record: RequestRecord) -> tuple[str, ...]:
    tokens = f"{record.prompt_tokens}+{record.completion_tokens}" if record.prompt_tokens else ""
    status = f"{record.status} {record.error}" if record.error else str(record.status)
    seconds = f"{record.seconds:.2f}" + (f" (load {record.load_s:.2f})" if record.load_s else "")
    # shown: what a client sent, escaped as sent (a stripped escape would read as another name), and cut
    return (time.strftime("%H:%M:%S", time.localtime(record.when)), shown(f"{record.method} {record.path}", 200),
            shown(record.model, 200), tokens, seconds, shown(status, 400))


class ServeLogScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ServeLogScreen { align: center middle; }
    ServeLogScreen > Vertical { width: 96%; height: 90%; border: round $accent; background: $surface; }
    ServeLogScreen DataTable { height: 1fr; }
    """
    BINDINGS = keymap.SERVE_LOG

    def __init__(self, records: list[RequestRecord], url: str | None) -> None:
        super().__init__()
        self._records = records
        self._url = url

    def compose(self) -> ComposeResult:
        with Vertical():
            where = f"serving at {self._url}" if self._url else "not running (palette: Start server)"
            yield Label(safe_line(f"Server log — {where}"), id="serve-log-title", markup=False)
            yield DataTable(id="serve-log", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        for record in self._records:
            table.add_row(*row(record))
        # On the newest, as a log is read (the oldest of a thousand rows is the least likely to be wanted).
        table.move_cursor(row=table.row_count - 1)
        table.focus()

    def add(self, record: RequestRecord) -> None:
        table = self.query_one(DataTable)
        following = table.cursor_row >= table.row_count - 1
        table.add_row(*row(record))
        if following:  # a row the user went up to read stays under the cursor
            table.move_cursor(row=table.row_count - 1)
