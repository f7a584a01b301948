"""The Convert pane's quality-sweep form: the types, the context, the importance matrix and its calibration text.

The fields are ``tuillm quants``' own declarations (``core.conversion.sweep_options.SWEEP_OPTIONS``), parsed by
them and turned into a request by ``sweep_request``, so the form and the flags take the same values with the same
one-line refusals (naming the form's field here, the flag in the CLI). The pane keeps every file (it asks which to
keep once the figures are in).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tuillm.core.conversion.sweep_options import KEEP_ALL, SWEEP_OPTIONS, SweepRequest, field_name, sweep_request
from tuillm.core.errors import TuillmError
from tuillm.core.options import option_map
from tuillm.core.text import safe_line
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.safe_input import SafeInput

FIELDS = ("types", "n_ctx", "imatrix", "calibration")  # the rest: the pane's (output folder, keep) or the settings'
_OPTIONS = option_map(SWEEP_OPTIONS)


class SweepDialog(ModalScreen[SweepRequest | None]):
    """Asks for the sweep's figures; dismisses with the checked request, or None."""

    HELP_TITLE = "Quality sweep"
    BINDINGS = keymap.SWEEP_FORM
    DEFAULT_CSS = DIALOG_CSS + """
    SweepDialog { align: center middle; }
    #sweep-grid { grid-size: 2; grid-columns: 20 1fr; grid-gutter: 0 1; height: auto; }
    #sweep-error { color: $error; height: auto; }
    """

    def __init__(self, source: Path, output_dir: Path, types: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.source = source
        self.output_dir = output_dir
        self.types = types  # the pane's ticked quant types, if any: the form starts with them

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label(f"Quality sweep: {safe_line(self.source.name)}", classes="dialog-title", markup=False)
            yield Label("Each type is written to the output folder and measured against the 16-bit model. "
                        "Ctrl+S or Enter starts, Esc cancels.", classes="dialog-hint")
            with Grid(id="sweep-grid"):
                for name in FIELDS:
                    option = _OPTIONS[name]
                    value = ",".join(self.types) if name == "types" and self.types else option.format(option.default)
                    yield Label(option.title)
                    yield SafeInput(value, placeholder=option.help, id=f"sweep-{name}", compact=True)
            yield Label("", id="sweep-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#sweep-types", Input).focus()

    def request(self) -> SweepRequest:
        """The form as a request; an ``OptionError``/``TuillmError`` names the first bad field."""
        values = {name: _OPTIONS[name].parse_field(self.query_one(f"#sweep-{name}", Input).value)
                  for name in FIELDS}
        values.update(output_dir=str(self.output_dir), keep=KEEP_ALL)
        return sweep_request(self.source, values, name_of=field_name)  # refusals name the fields, not the flags

    def on_input_submitted(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        try:
            request = self.request()
        except TuillmError as exc:
            self.query_one("#sweep-error", Label).update(safe_line(str(exc)))  # it quotes the typed path
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
