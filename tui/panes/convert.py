"""The Convert pane: an HF checkpoint to GGUF files of one or more types, or a GGUF re-quantized the same way.

Reading headers (for the size estimates), discovering models and the job itself run in thread workers that post
typed messages; the event loop only updates widgets. Several types share one f16/bf16 intermediate (see
``tuillm.core.conversion.job.convert_many``). Cancel removes the file being written and the intermediate; outputs
already complete are kept, as the pane says.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Label, ProgressBar, RichLog, Select, SelectionList
from textual.widgets.selection_list import Selection
from textual.worker import get_current_worker

from tuillm.core.conversion.job import OutputResult, convert_many
from tuillm.core.conversion.plan import (
    Source,
    estimate_sizes,
    open_source,
    output_name,
    plan_outputs,
    report_fits,
)
from tuillm.core.errors import error_text
from tuillm.core.events import Cancelled, Event, Log, Progress
from tuillm.core.models.catalog import CatalogResult, discover
from tuillm.core.models.metadata import format_bytes, format_params
from tuillm.tui.session import Session
from tuillm.tui.widgets.path_input import PathInput

# What each type is for, in a few words (the list is the only place a user sees them).
TYPE_NOTES = {
    "f32": "lossless, huge", "f16": "near lossless", "bf16": "lossless from bf16", "q8_0": "near lossless",
    "q6_k": "very good", "q5_k_m": "very good", "q5_k_s": "good", "q5_1": "legacy", "q5_0": "legacy",
    "q4_k_m": "good, the usual pick", "q4_k_s": "smaller", "q4_1": "legacy", "q4_0": "legacy",
    "q3_k_l": "low", "q3_k_m": "low", "q3_k_s": "lower", "q2_k": "lowest",
}
# Best first, as users pick: the usual choices near the top of the list.
TYPE_ORDER = ("q4_k_m", "q8_0", "q5_k_m", "q6_k", "f16", "bf16", "q4_k_s", "q5_k_s", "q3_k_m", "q3_k_l",
              "q3_k_s", "q2_k", "q4_0", "q4_1", "q5_0", "q5_1", "f32")


def _is_source_file(path: Path) -> bool:
    return path.suffix.lower() == ".gguf"


def _compact(widget: PathInput) -> PathInput:
    widget.compact = True  # one line, no border (PathInput does not take the ``compact`` argument)
    return widget


class ConvertPane(Vertical):
    HELP_TITLE = "Convert pane"
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="convert.start",
                tooltip="Write the ticked output types (space ticks a type in the list)"),
        Binding("escape", "cancel", "Cancel", id="convert.cancel",
                tooltip="Stop the job: the file being written is removed, completed ones are kept"),
        Binding("ctrl+r", "refresh", "Rescan", id="convert.refresh", tooltip="Scan the model folders for sources"),
        Binding("ctrl+l", "focus_log", "Log", show=False, id="convert.log",
                tooltip="Go to the log and reports (arrows scroll it)"),
    ]
    DEFAULT_CSS = """
    ConvertPane { height: 1fr; padding: 0 1; }
    ConvertPane .row { height: 1; }
    ConvertPane .row > Label.name { width: 6; color: $text-muted; }
    ConvertPane #convert-catalog, ConvertPane #convert-source, ConvertPane #convert-folder { width: 1fr; }
    ConvertPane #convert-info { height: 1; color: $text-muted; }
    ConvertPane #convert-types { height: 8; }
    ConvertPane #convert-controls { height: 1; margin-top: 0; }
    ConvertPane #convert-controls Button { margin-left: 1; min-width: 8; }
    ConvertPane #convert-hint { width: 1fr; color: $text-muted; margin-left: 1; }
    ConvertPane #convert-bar { width: 23; }
    ConvertPane #convert-bar Bar { width: 16; }
    ConvertPane #convert-progress { width: 1fr; }
    ConvertPane #convert-log { height: 1fr; min-height: 3; }
    """

    class OutputsWritten(Message):
        """Files that are complete: the app lists them in the Models pane at once."""

        def __init__(self, paths: list[Path]) -> None:
            super().__init__()
            self.paths = paths

    class SourcesLoaded(Message):
        def __init__(self, result: CatalogResult) -> None:
            super().__init__()
            self.result = result

    class SourceInspected(Message):
        def __init__(self, path: Path, source: Source | None, sizes: dict[str, int], error: str | None,
                     report_fits: bool = False) -> None:
            super().__init__()
            self.report_fits = report_fits
            self.path = path
            self.source = source
            self.sizes = sizes
            self.error = error

    class JobEvent(Message):
        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    class JobFinished(Message):
        def __init__(self, written: list[Path], error: str | None, cancelled: bool) -> None:
            super().__init__()
            self.written = written
            self.error = error
            self.cancelled = cancelled

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.source: Source | None = None
        self.sizes: dict[str, int] = {}
        self.running = False
        self.loading_sources = False
        self.last_written: list[Path] = []
        self.last_progress: Progress | None = None
        self.log_lines: list[str] = []  # what the log shows, unwrapped
        self._cancel = threading.Event()
        self._info = ""
        self._source_values: set[str] = set()
        self._report_touched = False  # the user's choice wins over the default for each source

    # --- layout -------------------------------------------------------------------------------------------------

    def default_folder(self) -> Path:
        dirs = self.session.model_dirs if self.session.model_dirs is not None else self.session.config.model_dirs
        return Path(dirs[0]) if dirs else Path.cwd()

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("From", classes="name")
            yield Select[str]([], prompt="a model found in your folders…", id="convert-catalog", compact=True)
        with Horizontal(classes="row"):
            yield Label("Path", classes="name")
            yield _compact(PathInput(placeholder="HF checkpoint folder or .gguf file", accept=_is_source_file,
                                     id="convert-source"))
        with Horizontal(classes="row"):
            yield Label("To", classes="name")
            yield _compact(PathInput(str(self.default_folder()), placeholder="output folder", id="convert-folder"))
        yield Label("Choose a source: an HF checkpoint converts, a GGUF re-quantizes.", id="convert-info",
                    markup=False)
        yield SelectionList[str](id="convert-types", compact=True)
        with Horizontal(id="convert-controls"):
            yield Checkbox("Quality report", id="convert-report", compact=True)
            yield Button("Start", id="convert-start", variant="primary", compact=True)
            yield Button("Cancel", id="convert-cancel", variant="error", compact=True, disabled=True)
            yield Label("Space ticks a type", id="convert-hint", markup=False)
        with Horizontal(classes="row"):
            yield ProgressBar(id="convert-bar", show_eta=False)
            yield Label("", id="convert-progress", markup=False)
        yield RichLog(id="convert-log", wrap=True, markup=False, highlight=False)

    def on_mount(self) -> None:
        self.query_one("#convert-bar", ProgressBar).update(total=1, progress=0)  # idle, not indeterminate
        self._fill_types()
        self.action_refresh()

    def on_unmount(self) -> None:
        self._cancel.set()  # quitting mid-job: stop it at the next tensor (and kill llama.cpp's quantizer)

    def focus_default(self) -> None:
        if self.running:
            self.query_one("#convert-cancel", Button).focus()
        else:
            self.query_one("#convert-catalog", Select).focus()

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Convert: start", "Write the ticked output types", self.action_start)
        yield SystemCommand("Convert: cancel", "Stop the conversion (completed files are kept)", self.action_cancel)
        yield SystemCommand("Convert: rescan sources", "Scan the model folders for sources", self.action_refresh)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.running else True  # shown dimmed while a job runs
        if action == "cancel":
            return self.running  # escape stays free for the widgets (e.g. closing the Select) otherwise
        return True

    # --- the source -----------------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.loading_sources = True
        self._discover()

    @work(thread=True, exclusive=True, group="convert-catalog", exit_on_error=False)
    def _discover(self) -> None:
        session = self.session
        try:
            result = discover(session.model_dirs, config=session.config, available=session.available_ram)
        except Exception as exc:  # a bug, shown, not fatal: the path field still works
            result = CatalogResult([], [])
            self.app.call_from_thread(self.notify, f"{exc.__class__.__name__}: {exc}", title="Convert",
                                      severity="error", markup=False)
        if not get_current_worker().is_cancelled:
            self.post_message(self.SourcesLoaded(result))

    def on_convert_pane_sources_loaded(self, event: SourcesLoaded) -> None:
        self.loading_sources = False
        select = self.query_one("#convert-catalog", Select)
        options = []
        for entry in event.result.entries:
            kind = "HF checkpoint" if entry.info.format == "hf" else f"{entry.info.file_type} GGUF"
            options.append((f"{entry.name} ({kind}, {format_params(entry.info.params)})", str(entry.path)))
        current = self.query_one("#convert-source", PathInput).value.strip()
        self._source_values = {value for _, value in options}
        with select.prevent(Select.Changed):
            select.set_options(options)
            if current and any(value == current for _, value in options):
                select.value = current

    @on(Select.Changed, "#convert-catalog")
    def _catalog_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#convert-source", PathInput).value = event.value

    @on(PathInput.Changed, "#convert-source")
    def _source_changed(self, event: PathInput.Changed) -> None:
        text = event.value.strip()
        self.source, self.sizes = None, {}
        if not text:
            self._set_info("Choose a source: an HF checkpoint converts, a GGUF re-quantizes.")
            self._fill_types()
            return
        self._set_info("reading the headers…")
        self._inspect(Path(text).expanduser())

    @work(thread=True, exclusive=True, group="convert-inspect", exit_on_error=False)
    def _inspect(self, path: Path) -> None:
        try:
            source = open_source(path)
            sizes = estimate_sizes(source)
            available = self.session.available_ram
            if available is None:
                from tuillm.core.models.hardware import available_ram

                available = available_ram()
            fits = report_fits(source, available)
        except Exception as exc:  # TuillmError is the expected one; anything else is shown the same way
            message = self.SourceInspected(path, None, {}, str(exc))
        else:
            message = self.SourceInspected(path, source, sizes, None, report_fits=fits)
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_convert_pane_source_inspected(self, event: SourceInspected) -> None:
        current = self.query_one("#convert-source", PathInput).value.strip()
        if not current or Path(current).expanduser() != event.path:
            return  # the user typed on meanwhile
        self.source, self.sizes = event.source, event.sizes
        if event.source is None:
            self._set_info(event.error or "not a model")
        else:
            s = event.source
            what = "HF checkpoint → convert" if s.kind == "hf" else "GGUF → re-quantize"
            note = "sizes are estimates" if event.report_fits else "too big for the report here"
            self._set_info(f"{what} · {format_params(s.params)} params · {note}")
            if not self._report_touched:
                # The report is part of the job unless the model is too big to run it beside everything else.
                checkbox = self.query_one("#convert-report", Checkbox)
                with checkbox.prevent(Checkbox.Changed):
                    checkbox.value = event.report_fits
        self._fill_types()

    @on(Checkbox.Changed, "#convert-report")
    def _report_changed(self) -> None:
        self._report_touched = True

    def use_source(self, path: Path) -> None:
        """Take ``path`` as the source (the Models pane's "send to Convert"): an HF folder converts, a GGUF
        re-quantizes."""
        if self.running:
            self.notify("a conversion is running: cancel it (Esc) or wait for it to finish", title="Convert",
                        severity="warning")
            return
        self.query_one("#convert-source", PathInput).value = str(path)
        select = self.query_one("#convert-catalog", Select)
        with select.prevent(Select.Changed):
            if str(path) in self._source_values:
                select.value = str(path)
        self.query_one("#convert-types", SelectionList).focus()

    @on(SelectionList.SelectedChanged, "#convert-types")
    def _update_hint(self) -> None:
        if self.running:
            self.query_one("#convert-hint", Label).update("Cancel keeps completed files")
            return
        ticked = self.query_one("#convert-types", SelectionList).selected
        if not ticked:
            text = "Space ticks a type"
        else:
            total = sum(self.sizes.get(t, 0) for t in ticked)
            text = f"{len(ticked)} ticked" + (f", ~{format_bytes(total)} in all" if total else "")
        self.query_one("#convert-hint", Label).update(text)

    def _set_info(self, text: str) -> None:
        self._info = text
        self.query_one("#convert-info", Label).update(text)

    def _fill_types(self) -> None:
        """The type list with each type's estimated size and file name; the ticks are kept."""
        types = self.query_one("#convert-types", SelectionList)
        ticked = set(types.selected)
        highlighted = types.highlighted
        name = self.source.name if self.source is not None else None
        options = []
        for t in TYPE_ORDER:
            size = f"~{format_bytes(self.sizes[t])}" if t in self.sizes else ""
            detail = output_name(name, t) if name else TYPE_NOTES[t]
            options.append(Selection(f"{t:<7}{size:>11}  {detail}", t, t in ticked))
        types.clear_options()
        types.add_options(options)
        # Something is highlighted from the start, so the first Space ticks what the user sees.
        types.highlighted = highlighted if highlighted is not None else 0
        self._update_hint()

    # --- the job ------------------------------------------------------------------------------------------------

    @on(Button.Pressed, "#convert-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#convert-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_focus_log(self) -> None:
        self.query_one("#convert-log", RichLog).focus()

    def action_start(self) -> None:
        if self.running:
            return
        types = list(self.query_one("#convert-types", SelectionList).selected)
        source = self.source
        if source is None:
            text = self.query_one("#convert-source", PathInput).value.strip()
            problem = self._info if text else "choose a source first"
            self.notify(problem, title="Convert", severity="warning", markup=False)
            return
        if not types:
            self.notify("tick at least one output type (space in the list)", title="Convert", severity="warning")
            return
        folder_text = self.query_one("#convert-folder", PathInput).value.strip()
        folder = Path(folder_text).expanduser() if folder_text else self.default_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.notify(f"{folder}: cannot create it ({exc.strerror or exc})", title="Convert", severity="error",
                        markup=False)
            return
        ordered = [t for t in TYPE_ORDER if t in types]
        outputs = plan_outputs(source, ordered, folder)
        report = self.query_one("#convert-report", Checkbox).value
        self.query_one("#convert-log", RichLog).clear()
        self.log_lines = []
        for _, path in outputs:
            if path.exists():
                self._log(f"warning: {path.name} exists and will be replaced")
        self.last_written = []
        self._cancel = threading.Event()
        self._set_running(True)
        self.query_one("#convert-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#convert-progress", Label).update("starting…")
        self._run_job(source.path, outputs, report, self._cancel)

    def _log(self, line: str) -> None:
        self.log_lines.append(line)
        self.query_one("#convert-log", RichLog).write(line)

    def action_cancel(self) -> None:
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            self.query_one("#convert-progress", Label).update("cancelling…")

    def _set_running(self, running: bool) -> None:
        self.running = running
        for selector in ("#convert-catalog", "#convert-source", "#convert-folder", "#convert-types",
                         "#convert-report", "#convert-start"):
            self.query_one(selector).disabled = running
        cancel = self.query_one("#convert-cancel", Button)
        cancel.disabled = not running
        if running:
            cancel.focus()  # the focus must stay in the pane so that its keys (escape) keep working
        elif self.app.focused is None or self.app.focused is cancel:
            self.query_one("#convert-types", SelectionList).focus()
        self._update_hint()
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="convert-job", exit_on_error=False)
    def _run_job(self, src: Path, outputs: list[tuple[str, Path]], report: bool, cancel: threading.Event) -> None:
        written: list[Path] = []

        def on_written(result: OutputResult) -> None:
            written.append(result.path)
            self.post_message(self.OutputsWritten([result.path]))

        error, cancelled = None, False
        try:
            convert_many(src, outputs, emit=lambda e: self.post_message(self.JobEvent(e)), cancel=cancel,
                         report=report, on_written=on_written)
        except Cancelled:
            cancelled = True
        except Exception as exc:  # a TuillmError's line, or a bug in one line: the app keeps running
            error = error_text(exc)
        self.post_message(self.JobFinished(written, error, cancelled))

    def on_convert_pane_job_event(self, message: JobEvent) -> None:
        event = message.event
        if isinstance(event, Progress):
            self.last_progress = event
            bar = self.query_one("#convert-bar", ProgressBar)
            bar.update(total=event.total or None, progress=event.done)
            self.query_one("#convert-progress", Label).update(f"{event.stage}: {event.message}")
        elif isinstance(event, Log):
            prefix = "" if event.level == "info" else f"{event.level}: "
            self._log(prefix + event.message)

    def on_convert_pane_job_finished(self, message: JobFinished) -> None:
        self._set_running(False)
        self.last_written = list(message.written)
        label = self.query_one("#convert-progress", Label)
        kept = ", ".join(p.name for p in message.written)
        if message.cancelled:
            label.update("cancelled")
            self._log("cancelled: the file in progress was removed" + (f"; kept {kept}" if kept else ""))
            self.notify("cancelled" + (f"; completed files kept: {kept}" if kept else ""), title="Convert",
                        markup=False)
        elif message.error:
            label.update("failed")
            self._log(f"error: {message.error}")
            self.notify(message.error, title="Convert failed", severity="error", markup=False)
        else:
            n = len(message.written)
            label.update(f"done: {n} file{'s' if n != 1 else ''} written")
            self.notify(f"wrote {kept}", title="Convert", markup=False)
        if message.written:
            self.action_refresh()  # the new files can be a source too (re-quantize an f16)
