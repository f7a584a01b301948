"""CSS shared by the dialogs: the Models pane's (``.models-dialog``) and the app's others (``.dialog``, app.tcss)."""

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
/* A Label is as wide as its text: a long question or error was cut at the border (80x24). As wide as the dialog,
   it wraps instead. */
.models-dialog > Label, .dialog > Label { width: 100%; height: auto; }
"""
