"""The Convert pane: an HF checkpoint to GGUF files of one or more types, or a GGUF re-quantized the same way.

Discovering sources, reading a source's headers (for the size estimates) and the job itself run on
``tui.jobs.run_job`` (``convert_jobs``), which posts typed messages; the event loop only updates widgets (texts
from ``convert_view``). Several types share one f16/bf16 intermediate (see
``tuillm.core.conversion.job.convert_many``). Cancel removes the file being written and the intermediate; outputs
already complete are kept, as the pane says.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Label, ProgressBar, RichLog, Select, SelectionList

from tuillm.core.conversion.job import OutputResult
from tuillm.core.conversion.plan import Source, plan_outputs
from tuillm.core.events import Log, Progress
from tuillm.core.files import NUL_PATH
from tuillm.core.paths import expand_user
from tuillm.core.text import safe_text
from tuillm.tui import keymap
from tuillm.tui.jobs import JobCancelled, JobFailed, JobProgress
from tuillm.tui.panes import convert_jobs as jobs
from tuillm.tui.panes import convert_view as view
from tuillm.tui.panes.convert_sweep import ConvertSweep
from tuillm.tui.panes.outputs import OutputsWritten, models_folder
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.session import Session
from tuillm.tui.widgets.imatrix_choice import ImatrixChoice
from tuillm.tui.widgets.path_input import PathInput

# Disabled while a job runs (Cancel is the one control left).
_FORM = ("#convert-catalog", "#convert-source", "#convert-folder", "#convert-types", "#convert-imatrix",
         "#convert-report", "#convert-start")


def _compact(widget: PathInput) -> PathInput:
    widget.compact = True  # one line, no border (PathInput does not take the ``compact`` argument)
    return widget


class ConvertPane(ConvertSweep, Vertical):
    HELP_TITLE = "Convert pane"
    BINDINGS = keymap.CONVERT
    DEFAULT_CSS = """
    ConvertPane { height: 1fr; padding: 0 1; }
    ConvertPane .row { height: 1; }
    ConvertPane .row > Label.name { width: 7; color: $text-muted; }  /* "Matrix" and a space */
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

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.source: Source | None = None
        self.sizes: dict[str, int] = {}
        self.running = False
        self.loading_sources = False
        self.last_written: list[Path] = []  # the outputs of the last job that are complete
        self.last_progress: Progress | None = None
        self.log_lines: list[str] = []  # what the log shows, unwrapped
        self._cancel = threading.Event()
        self._info = ""
        self._source_values: set[str] = set()
        self._report_touched = False  # the user's choice wins over the default for each source
        self._catalog_generation = 0
        self._inspect_generation = 0

    # --- layout -------------------------------------------------------------------------------------------------

    def default_folder(self) -> Path:
        # Shown in "To" before anything starts; in a models folder, Models lists the files at once.
        return models_folder(self.session) or Path.cwd()

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("From", classes="name")
            yield Select[str]([], prompt="a model found in your folders…", id="convert-catalog", compact=True)
        with Horizontal(classes="row"):
            yield Label("Path", classes="name")
            yield _compact(PathInput(placeholder="HF checkpoint folder or .gguf file", accept=view.is_source_file,
                                     id="convert-source"))
        with Horizontal(classes="row"):
            yield Label("To", classes="name")
            yield _compact(PathInput(str(self.default_folder()), placeholder="output folder", id="convert-folder"))
        yield Label(view.NO_SOURCE, id="convert-info", markup=False)
        yield SelectionList[str](id="convert-types", compact=True)
        yield ImatrixChoice(id="convert-imatrix", classes="row")
        with Horizontal(id="convert-controls"):
            yield Checkbox("Quality report", id="convert-report", compact=True)
            yield Button("Start", id="convert-start", variant="primary", compact=True)
            yield Button("Cancel", id="convert-cancel", variant="error", compact=True, disabled=True)
            yield Label(view.NO_TICK, id="convert-hint", markup=False)
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
        # At once: the keys of the burst that showed the pane come next in the queue (see ModelsPane).
        if self.running:
            self.screen.set_focus(self.query_one("#convert-cancel", Button))
        else:
            self.screen.set_focus(self.query_one("#convert-catalog", Select))

    def work_in_progress(self) -> list[str]:
        return [view.stop_words(self.sweeping, jobs.in_report(self.last_progress))[1]] if self.running else []

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Convert: start", "Write the ticked output types", self.action_start)
        yield SystemCommand("Convert: cancel", "Stop the conversion (completed files are kept)", self.action_cancel)
        yield SystemCommand("Convert: rescan sources", "Scan the model folders for sources", self.action_refresh)
        yield SystemCommand("Convert: quality sweep", "Quantize the source to several types, measure each and "
                            "recommend the one for this machine", self.action_sweep)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.running else True  # shown dimmed while a job runs
        if action == "cancel":
            return self.running  # escape stays free for the widgets (e.g. closing the Select) otherwise
        return True

    # --- the source -----------------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.loading_sources = True
        self._catalog_generation += 1
        jobs.start_discovery(self, self.session, self._catalog_generation)

    def on_sources_loaded(self, message: jobs.SourcesLoaded) -> None:
        message.stop()
        if message.generation == self._catalog_generation:
            self._show_sources(view.catalog_options(message.result))

    def _show_sources(self, options: list[view.SourceOption]) -> None:
        self.loading_sources = False
        select = self.query_one("#convert-catalog", Select)
        current = self.query_one("#convert-source", PathInput).value.strip()
        self._source_values = {value for _, value in options}
        with select.prevent(Select.Changed):
            select.set_options(options)
            if current and current in self._source_values:
                select.value = current

    @on(Select.Changed, "#convert-catalog")
    def _catalog_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#convert-source", PathInput).value = event.value

    @on(PathInput.Changed, "#convert-source")
    def _source_changed(self, event: PathInput.Changed) -> None:
        text = event.value.strip()
        self.source, self.sizes = None, {}
        self._inspect_generation += 1  # a header read still running is for another path now
        if not text:
            self._set_info(view.NO_SOURCE)
            self._fill_types()
            return
        self._set_info("reading the headers…")
        jobs.start_inspection(self, expand_user(text), self.session.available_ram, self._inspect_generation)

    def on_source_inspected(self, message: jobs.SourceInspected) -> None:
        message.stop()
        if message.generation != self._inspect_generation:
            return  # the user typed on meanwhile
        inspection = message.inspection
        self.source, self.sizes = inspection.source, inspection.sizes
        self._set_info(view.source_info(inspection))
        if inspection.source is not None and not self._report_touched:
            # The report is part of the job unless the model is too big to run it beside everything else.
            checkbox = self.query_one("#convert-report", Checkbox)
            with checkbox.prevent(Checkbox.Changed):
                checkbox.value = inspection.report_fits
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
        ticked = list(self.query_one("#convert-types", SelectionList).selected)
        text = view.running_hint(self.sweeping) if self.running else view.hint(ticked, self.sizes)
        self.query_one("#convert-hint", Label).update(text)

    def _set_info(self, text: str) -> None:
        self._info = text
        self.query_one("#convert-info", Label).update(text)

    def _fill_types(self) -> None:
        """The type list with each type's estimated size and file name; the ticks are kept."""
        types = self.query_one("#convert-types", SelectionList)
        highlighted = types.highlighted
        name = self.source.name if self.source is not None else None
        options = view.type_options(self.sizes, name, set(types.selected))
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
        outputs = self._planned_outputs()
        if outputs is None or self.source is None:
            return
        if clash := view.source_clash(self.source.path, outputs):  # asked to replace it, the job would refuse
            self.notify(clash, title="Convert", severity="warning", markup=False)
            return
        if problem := self.query_one("#convert-imatrix", ImatrixChoice).problem:
            self.notify(problem, title="Convert", severity="warning", markup=False)
            return
        existing = [path for _, path in outputs if path.exists()]
        if not existing:
            self._begin(outputs, force=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._begin(outputs, force=True)

        names = ", ".join(path.name for path in existing)
        self.app.push_screen(ConfirmScreen(f"Replace {names} in {existing[0].parent}?"), answered)

    def _begin(self, outputs: list[tuple[str, Path]], *, force: bool) -> None:
        """The job itself; ``force``: the user agreed to replace the outputs that exist."""
        if self.running or self.source is None:
            return
        report = self.query_one("#convert-report", Checkbox).value
        self.query_one("#convert-log", RichLog).clear()
        self.log_lines = []
        for _, path in outputs:
            if path.exists():
                self._log(f"replacing {path.name}")
        self.last_written, self.last_progress = [], None  # a cancel before the job's first event is in no report
        self._cancel = threading.Event()
        self._set_running(True)
        self.query_one("#convert-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#convert-progress", Label).update("starting…")
        jobs.start_conversion(self, self.source.path, outputs, report, self._cancel, self._written, force=force,
                              imatrix=self.query_one("#convert-imatrix", ImatrixChoice).value)

    def _planned_outputs(self) -> list[tuple[str, Path]] | None:
        """The (type, file) pairs to write, the output folder created; None (the user told why) when not ready."""
        types = list(self.query_one("#convert-types", SelectionList).selected)
        if self.source is None:
            text = self.query_one("#convert-source", PathInput).value.strip()
            problem = self._info if text else "choose a source first"
            self.notify(problem, title="Convert", severity="warning", markup=False)
            return None
        if not types:
            self.notify("tick at least one output type (space in the list)", title="Convert", severity="warning")
            return None
        folder_text = self.query_one("#convert-folder", PathInput).value.strip()
        folder = expand_user(folder_text) if folder_text else self.default_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in what was pasted
            why = f"cannot create it ({exc.strerror or exc})" if isinstance(exc, OSError) else NUL_PATH
            self.notify(f"{folder}: {why}", title="Convert", severity="error", markup=False)
            return None
        return plan_outputs(self.source, view.in_list_order(types), folder)

    def _written(self, result: OutputResult) -> None:
        """In the job's worker, as each output completes: the pane and the app hear of it at once."""
        self.post_message(OutputsWritten([result.path]))

    def on_outputs_written(self, message: OutputsWritten) -> None:
        # Not stopped: it goes on to the app, which lists the files in the Models pane.
        if self.running:
            self.last_written.extend(message.paths)

    def _log(self, line: str) -> None:
        line = safe_text(line)  # log lines quote file names and model output
        self.log_lines.append(line)
        self.query_one("#convert-log", RichLog).write(line)

    def action_cancel(self) -> None:
        # Esc never destroys work unasked: stopping loses the file being written (the report, a sweep's files).
        if self.running and not self._cancel.is_set():
            cancel = self._cancel  # each job has its own: the question is about this one (withdrawn when it ends)
            question = ConfirmScreen(view.stop_words(self.sweeping, jobs.in_report(self.last_progress))[0],
                                     stands=lambda: self.running and self._cancel is cancel)
            self.app.push_screen(question, self._cancel_answered)

    def _cancel_answered(self, yes: bool | None) -> None:
        if yes and self.running and not self._cancel.is_set():  # the job may have ended while the user read
            self._cancel.set()
            self.query_one("#convert-progress", Label).update("cancelling…")

    def _set_running(self, running: bool) -> None:
        self.running, self.sweeping = running, self.sweeping and running  # a sweep sets its flag before this
        cancel = self.query_one("#convert-cancel", Button)
        lost = self.app.focused is None or self.app.focused is cancel  # read before Textual moves it off Cancel
        for selector in _FORM:
            self.query_one(selector).disabled = running
        cancel.disabled = not running
        if running:  # the focus must stay in the pane so that its keys (escape) keep working; at once: the job
            self.screen.set_focus(cancel)  # may end in this turn
        elif lost:  # at once too: a deferred focus() left the Checkbox focused (Textual's pick) for a turn
            self.screen.set_focus(self.query_one("#convert-types", SelectionList))
        self._update_hint()
        self.refresh_bindings()

    def on_job_progress(self, message: JobProgress) -> None:
        if message.name != jobs.CONVERT:
            return
        message.stop()
        event = message.event
        if isinstance(event, Progress):
            self.last_progress = event
            self.query_one("#convert-bar", ProgressBar).update(total=event.total or None, progress=event.done)
            self.query_one("#convert-progress", Label).update(view.progress_text(event.stage, event.message))
        elif isinstance(event, Log):
            self._log(event.message if event.level == "info" else f"{event.level}: {event.message}")

    def on_conversion_done(self, message: jobs.ConversionDone) -> None:
        message.stop()
        self._job_ended(view.done_text(self.last_written))
        self.notify(f"wrote {view.kept_text(self.last_written)}", title="Convert", markup=False)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        if message.name != jobs.CONVERT:
            return
        message.stop()
        label, line, note = view.cancelled_texts(self.last_written, jobs.in_report(self.last_progress))
        self._job_ended(label)
        self._log(line)
        self.notify(note, title="Convert", markup=False)

    def on_job_failed(self, message: JobFailed) -> None:
        if message.name not in (jobs.CATALOG, jobs.INSPECT, jobs.CONVERT):
            return
        message.stop()
        if message.name == jobs.CATALOG:  # a bug, shown, not fatal: the path field still works
            self._show_sources([])
            self.notify(message.error, title="Convert", severity="error", markup=False)
        elif message.name == jobs.INSPECT:
            self._set_info(message.error)
        else:
            self._job_ended("failed")
            self._log(f"error: {message.error}")
            self.notify(message.error, title="Convert failed", severity="error", markup=False)

    def _job_ended(self, label: str) -> None:
        self._set_running(False)
        self.query_one("#convert-progress", Label).update(label)
        if self.last_written:
            self.action_refresh()  # the new files can be a source too (re-quantize an f16)
