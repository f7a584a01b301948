"""CSS shared by the Models pane's dialogs."""

from __future__ import annotations

DIALOG_CSS = """
.models-dialog {
    width: 90%;
    max-width: 78;
    height: auto;
    max-height: 95%;
    border: round $accent;
    background: $surface;
    padding: 0 1;
}
.models-dialog .dialog-title { text-style: bold; padding-bottom: 1; }
.models-dialog .dialog-hint { color: $text-muted; }
"""
