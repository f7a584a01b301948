"""The Convert pane's quality sweep (a mixin of ``ConvertPane``): F8 or the palette asks for the types
(``screens.sweep_dialog``), runs ``core.conversion.sweep.run_sweep`` on the selected source in a worker, then shows
the figures in place of the type list and the log: the table (``widgets.quant_table``) with the recommended type
marked and highlighted, the size-vs-KL plot (``widgets.kl_plot``), and buttons to keep the highlighted type's file
and delete the others (after a confirmation), or to close the figures.

Every measured file is kept by the job (the pane asks afterwards); Esc cancels it with the pane's usual question,
and a cancelled or failed sweep leaves nothing behind (its hidden folder goes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Label, ProgressBar, SelectionList

from tuillm.core.events import Log, Progress
from tuillm.core.paths import expand_user
from tuillm.core.text import safe_line
from tuillm.tui.jobs import JobCancelled, JobFailed, JobProgress, run_job
from tuillm.tui.panes.outputs import OutputsWritten
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.session import Session

if TYPE_CHECKING:  # the sweep's modules (and the table's) load with the first sweep
    from tuillm.core.conversion.plan import Source
    from tuillm.core.conversion.sweep import SweepResult
    from tuillm.core.conversion.sweep_options import SweepRequest
    from tuillm.tui.widgets.kl_plot import PlotPoint

SWEEP = "convert-sweep"
# Hidden while the figures are shown (they take their place).
_REPLACED = ("#convert-types", "#convert-log")


class SweepDone(Message):
    def __init__(self, result: SweepResult) -> None:
        super().__init__()
        self.result = result


def sweep_points(result: SweepResult) -> list[PlotPoint]:
    from tuillm.tui.widgets.kl_plot import PlotPoint

    return [PlotPoint(r.out_type, r.bpw, r.kl, r.out_type == result.recommended) for r in result.rows]


def recommendation_text(result: SweepResult) -> str:
    """One short line (it shares its row with the buttons at 80 columns)."""
    if result.recommended is None:
        return f"none fits at {result.n_ctx:,} tokens with headroom"
    return f"★ {result.recommended}: lowest KL that fits at {result.n_ctx:,} tokens"


class SweepPanel(Vertical):
    """The figures of one sweep: table, plot, and what to keep."""

    DEFAULT_CSS = """
    SweepPanel { height: 1fr; }
    SweepPanel #sweep-recommendation { width: 1fr; height: 1; color: $success; }
    SweepPanel #sweep-buttons { height: 1; }
    SweepPanel #sweep-buttons Button { margin-left: 1; min-width: 8; }
    SweepPanel KLPlot { height: 1fr; min-height: 5; }
    """

    def __init__(self, result: SweepResult) -> None:
        super().__init__(id="sweep-panel")
        self.result = result

    def compose(self) -> ComposeResult:
        from tuillm.tui.widgets.kl_plot import KLPlot
        from tuillm.tui.widgets.quant_table import QuantTable

        with Horizontal(id="sweep-buttons"):  # first: at 80x24 the plot below gets what is left
            yield Label(recommendation_text(self.result), id="sweep-recommendation", markup=False)
            yield Button("Keep highlighted", id="sweep-keep", variant="primary", compact=True)
            yield Button("Close", id="sweep-close", compact=True)
        yield QuantTable(id="sweep-table")
        yield KLPlot(id="sweep-plot")

    def on_mount(self) -> None:
        from tuillm.tui.widgets.kl_plot import KLPlot
        from tuillm.tui.widgets.quant_table import QuantTable

        self.query_one(QuantTable).show(self.result)
        self.query_one(KLPlot).show(sweep_points(self.result))
        self.query_one(QuantTable).focus()


class ConvertSweep:
    # What this uses of the pane (ConvertPane and its Widget base define them); a plain class, as the chat's.
    app: App[int]
    notify: Callable[..., None]
    session: Session
    source: Source | None
    running: bool
    _cancel: threading.Event
    query_one: Callable[..., Any]  # Widget.query_one: the widget of the type asked for
    mount: Callable[..., Any]
    post_message: Callable[[Message], bool]
    _log: Callable[[str], None]
    _set_running: Callable[[bool], None]
    _job_ended: Callable[[str], None]
    action_refresh: Callable[[], None]
    sweep_result: SweepResult | None = None
    sweeping = False  # the running job is a sweep (the pane's _set_running(False) clears it): a cancel keeps nothing

    def action_sweep(self) -> None:
        from tuillm.convert.types import OUTPUT_TYPES
        from tuillm.tui.screens.sweep_dialog import SweepDialog
        from tuillm.tui.widgets.path_input import PathInput

        if self.running:
            return
        if self.source is None:
            self.notify("choose a source first", title="Quality sweep", severity="warning")
            return
        ticked = tuple(t for t in self.query_one("#convert-types", SelectionList).selected if OUTPUT_TYPES[t].quantized)
        folder_text = self.query_one("#convert-folder", PathInput).value.strip()
        folder = expand_user(folder_text) if folder_text else self.source.path.absolute().parent
        self.app.push_screen(SweepDialog(self.source.path, folder, ticked), self._sweep_begin)

    def _sweep_begin(self, request: SweepRequest | None) -> None:
        if request is None or self.running:
            return
        from tuillm.core.conversion.sweep import run_sweep

        self.close_sweep()
        self._cancel = cancel = threading.Event()
        self.sweeping = True
        self._set_running(True)
        self.query_one("#convert-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#convert-progress", Label).update("starting the sweep…")
        self._log(f"quality sweep of {request.source.name}: {', '.join(request.types)}")
        session = self.session
        run_job(self, SWEEP, lambda emit: run_sweep(request, config=session.config, emit=emit, cancel=cancel,
                                                   available=session.available_ram), SweepDone)

    def on_job_progress(self, message: JobProgress) -> None:
        if message.name != SWEEP:
            return
        message.stop()
        event = message.event
        if isinstance(event, Progress):
            self.query_one("#convert-bar", ProgressBar).update(
                total=event.total or None, progress=event.done)
            self.query_one("#convert-progress", Label).update(
                safe_line(f"{event.stage}: {event.message}"))
        elif isinstance(event, Log):
            self._log(event.message if event.level == "info" else f"{event.level}: {event.message}")

    def on_sweep_done(self, message: SweepDone) -> None:
        message.stop()
        result = message.result
        self._job_ended("sweep done")
        for path in result.kept:
            self._log(f"kept {path}")
        self.show_sweep(result)
        self.post_message(OutputsWritten(list(result.kept)))  # the app lists the files in the Models pane
        self.notify(f"{recommendation_text(result)} (KL against {safe_line(result.baseline)} over {result.tokens} "
                    "tokens)", title="Quality sweep", markup=False)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        if message.name == SWEEP:
            message.stop()
            self._job_ended("cancelled")
            self._log("sweep cancelled: nothing was kept")
            self.notify("sweep cancelled: nothing was kept", title="Quality sweep", markup=False)

    def on_job_failed(self, message: JobFailed) -> None:
        if message.name == SWEEP:
            message.stop()
            self._job_ended("failed")
            self._log(f"error: {message.error}")
            self.notify(message.error, title="Quality sweep failed", severity="error", markup=False)

    # --- the figures ------------------------------------------------------------------------------------------

    def show_sweep(self, result: SweepResult) -> None:
        """The figures of ``result`` in place of the type list and the log."""
        self.close_sweep()
        self.sweep_result = result
        for selector in _REPLACED:
            self.query_one(selector, object).display = False
        self.mount(SweepPanel(result), before="#convert-controls")

    def close_sweep(self) -> None:
        from textual.css.query import NoMatches

        try:
            panel = self.query_one("#sweep-panel", SweepPanel)
        except NoMatches:
            return
        panel.remove()
        for selector in _REPLACED:
            self.query_one(selector, object).display = True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        # A plain method, not @on: Textual collects @on handlers only from its own classes, not from a mixin.
        if event.button.id == "sweep-close":
            event.stop()
            self.close_sweep()
        elif event.button.id == "sweep-keep":
            event.stop()
            self.action_keep_highlighted()

    def action_keep_highlighted(self) -> None:
        """Keep the highlighted type's file and delete the sweep's other files, after a confirmation."""
        from tuillm.tui.widgets.quant_table import QuantTable

        result = self.sweep_result
        chosen = self.query_one("#sweep-table", QuantTable).highlighted_type
        if result is None or chosen is None:
            return
        others = [p for p in result.kept if p.exists() and not _is_file_of(p, result, chosen)]
        if not others:
            self.notify(f"only the {chosen} file is left", title="Quality sweep")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete_others(result, others)

        names = ", ".join(p.name for p in others)
        self.app.push_screen(ConfirmScreen(f"Keep {chosen} and delete {len(others)} file(s): {names}?"), answered)

    def _delete_others(self, result: SweepResult, others: list[Path]) -> None:
        failed = []
        for path in others:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                failed.append(f"{path.name} ({exc.strerror or exc})")
        result.kept = [p for p in result.kept if p.exists()]
        self.notify(f"deleted {len(others) - len(failed)} file(s)" + (f"; could not delete {', '.join(failed)}"
                                                                     if failed else ""),
                    title="Quality sweep", severity="error" if failed else "information", markup=False)
        self.action_refresh()  # the deleted files leave the source list


def _is_file_of(path: Path, result: SweepResult, out_type: str) -> bool:
    row = result.row(out_type)
    return row is not None and path.name == row.file_name
