"""The Train pane's jobs and what they make: one job at a time, its progress and end shown in the run view; the
merge, LoRA export and A/B actions over a finished adapter.

``TrainPane`` builds on this class (the layout, the form and starting a run are there). Each job runs on
``tui.jobs.run_job`` (``train_jobs``): progress arrives as ``JobProgress``, the end as the job's typed result
message, ``JobCancelled`` or ``JobFailed``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.containers import VerticalScroll
from textual.notifications import SeverityLevel
from textual.widget import Widget
from textual.widgets import Button, Select, Static

from tuillm.core.chat.backend import llama_backend
from tuillm.core.text import safe_line
from tuillm.core.train.options import TrainConfig
from tuillm.tui.jobs import JobCancelled, JobFailed, JobProgress
from tuillm.tui.panes import train_jobs as jobs
from tuillm.tui.panes.outputs import OutputsWritten, models_folder
from tuillm.tui.panes.train_run import RunView
from tuillm.tui.screens.ab import ABScreen, ABSources, Compare, ConvertBaseFirst, ExportFirst, next_ab_step
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.session import Session


class TrainJobs(VerticalScroll):
    """The job state and the result actions of the Train pane (see the module docstring)."""

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.job: str | None = None  # the running job, one at a time
        self.cancel_event = threading.Event()
        self.run_config: TrainConfig | None = None  # of the last run started
        self.base_path: Path | None = None  # resolved base of the last run
        self.adapter_dir: Path | None = None  # a finished adapter
        self.merged_path: Path | None = None
        self.lora_gguf: Path | None = None
        self.base_gguf: Path | None = None  # the base as a GGUF, for A/B
        self._ab_pending = False  # a step towards A/B is running: A/B goes on when it succeeds
        self._focus_after: Button | None = None  # the button that started the running job

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        # File names and error text are never markup.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _busy(self) -> bool:
        if self.job is not None:
            self.notify(f"{self.job} is running: Esc cancels it", title="Train", severity="warning")
            return True
        return False

    def _set_job(self, job: str | None) -> None:
        self.job = job
        if job is not None:
            self.cancel_event = threading.Event()
        focused = self.app.focused
        on_button = focused is None or isinstance(focused, Button)  # a button this may disable (Start, Merge…)
        self.query_one("#train-start", Button).disabled = job is not None
        cancel = self.query_one("#train-cancel", Button)
        cancel.disabled = job is None
        done = self.adapter_dir is not None and job is None
        for name in ("merge", "export", "ab"):
            self.query_one(f"#train-{name}", Button).disabled = not done
        self.query_one("#train-chat", Button).disabled = self.merged_path is None or job is not None
        self._keep_focus(job, on_button, focused)
        self.refresh_bindings()

    def _keep_focus(self, job: str | None, on_button: bool, before: Widget | None) -> None:
        """A job started from a button (which it disables): the focus goes to Cancel, or it was lost and the pane's
        keys (Esc) with it; when the job ends it goes back to that button, else to Start."""
        if not on_button:
            return  # typing in a field: the focus stays there
        if job is not None:
            if isinstance(before, Button) and before.id != "train-cancel":
                self._focus_after = before
            self.screen.set_focus(self.query_one("#train-cancel", Button))  # at once: the job may end in this turn
        elif before is None or before.id == "train-cancel":  # (Textual moved it already, off the disabled Cancel)
            back, self._focus_after = self._focus_after, None
            self.screen.set_focus(back if back is not None and not back.disabled else self.query_one("#train-start"))

    def on_job_progress(self, message: JobProgress) -> None:
        message.stop()
        self.query_one(RunView).add(message.event)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        message.stop()
        if message.name == jobs.TRAIN and self.run_config is not None:
            from tuillm.core.train.checkpoints import latest_checkpoint

            if latest_checkpoint(Path(self.run_config.output)) is None:  # stopped while loading: no step to keep
                text = "cancelled before the first step: nothing was saved"
            else:
                text = (f"cancelled: the checkpoint is in {self.run_config.output}/checkpoints (tick Resume and Start "
                        "to continue)")
        else:
            text = f"{message.name} cancelled"
        run = self.query_one(RunView)
        run.log(text, "yellow")
        run.show(text, "yellow")
        self.notify(text, title="Train", severity="warning", timeout=10)
        self._job_ended()

    def on_job_failed(self, message: JobFailed) -> None:
        message.stop()
        run = self.query_one(RunView)
        run.log(f"{message.name} failed: {message.error}", "red")
        run.failed(f"{message.name} failed")
        self.notify(message.error, title=f"{message.name.title()} failed", severity="error", timeout=15)
        self._job_ended()

    def _job_ended(self) -> None:
        self._ab_pending = False
        self._set_job(None)

    @on(jobs.Merged)
    def _merged(self, message: jobs.Merged) -> None:
        message.stop()
        self.merged_path = message.path
        self.query_one(RunView).show(f"merged: {message.path.name}", "green")
        self._set_result(f"Merged GGUF: {message.path}")
        self.notify(f"wrote {message.path}", title="Merge done")
        self.post_message(OutputsWritten([message.path]))
        self._step_done()

    @on(jobs.Exported)
    def _exported(self, message: jobs.Exported) -> None:
        message.stop()
        self.lora_gguf = message.path
        self.query_one(RunView).show(f"exported: {message.path.name}", "green")
        self._set_result(f"LoRA GGUF: {message.path}")
        self.notify(f"wrote {message.path}", title="Export done")
        self.post_message(OutputsWritten([message.path]))
        self._step_done()

    @on(jobs.BaseConverted)
    def _base_converted(self, message: jobs.BaseConverted) -> None:
        message.stop()
        self.base_gguf = message.path
        self._set_result(f"Base GGUF (for A/B): {message.path}")
        self._step_done()

    def _step_done(self) -> None:
        """A merge, export or conversion succeeded: A/B goes on when it asked for it."""
        self._set_job(None)
        if self._ab_pending:
            self.action_ab()

    def _set_result(self, line: str) -> None:
        result = self.query_one("#train-result", Static)
        previous = str(result.content)
        # Paths of the user's files: a file name may hold control sequences.
        result.update(Text((previous + "\n" if previous else "") + safe_line(line)))

    def _need_adapter(self) -> bool:
        if self.adapter_dir is None or self.base_path is None:
            self.notify("train an adapter first (Ctrl+S starts)", title="Train", severity="warning")
            return False
        return not self._busy()

    def output_folder(self) -> Path | None:
        """Where Merge and Export write (shown under their buttons): the first models folder, so the Models pane
        lists the files at once; None (no models folder set): into the adapter's folder."""
        return models_folder(self.session)

    def _ask_to_replace(self, out: Path, start: Callable[[bool], None]) -> None:
        """``start(force)`` now when ``out`` is new; after a yes when it exists (a no leaves it, and A/B waits)."""
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._ab_pending = False
            self.notify(f"{out.parent}: cannot create it ({exc.strerror or exc})", title="Train", severity="error")
            return
        if not out.exists():
            start(False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                start(True)
            else:
                self._ab_pending = False

        self.app.push_screen(ConfirmScreen(f"Replace {out}?"), answered)

    def _merge_type(self) -> str:
        return str(self.query_one("#train-merge-type", Select).value)

    def action_merge(self) -> None:
        if not self._need_adapter():
            return
        adapter, base = self.adapter_dir, self.base_path
        assert adapter is not None and base is not None
        out_type = self._merge_type()
        out = (self.output_folder() or adapter) / f"{adapter.name}-{out_type}.gguf"

        def start(force: bool) -> None:
            if self._busy():
                return
            self._set_job(jobs.MERGE)
            self.query_one(RunView).log(f"merging into {out}")
            jobs.start_merge(self, base, adapter, out, out_type, self.cancel_event, force=force)

        self._ask_to_replace(out, start)

    def action_export(self) -> None:
        if not self._need_adapter():
            return
        adapter, base = self.adapter_dir, self.base_path
        assert adapter is not None and base is not None
        out = (self.output_folder() or adapter) / f"{adapter.name}-lora-f16.gguf"

        def start(force: bool) -> None:
            if self._busy():
                return
            self._set_job(jobs.EXPORT)
            self.query_one(RunView).log(f"exporting the adapter to {out}")
            jobs.start_export(self, adapter, base, out, self.cancel_event, force=force)

        self._ask_to_replace(out, start)

    def action_ab(self) -> None:
        """A/B needs the base as a GGUF and a tuned GGUF; each missing piece is made first (see
        ``tui.screens.ab.next_ab_step``), then A/B opens."""
        if not self._need_adapter():
            return
        assert self.base_path is not None and self.adapter_dir is not None
        from tuillm.core.paths import demo_model_path
        from tuillm.core.train.base import is_gguf

        sources = ABSources(self.base_path, self.adapter_dir, self.merged_path, self.lora_gguf, self.base_gguf,
                            self._merge_type())
        step = next_ab_step(sources, is_gguf, demo_model_path())
        self._ab_pending = not isinstance(step, Compare)
        log = self.query_one(RunView).log
        if isinstance(step, Compare):
            self.base_gguf = step.base.path
            self.app.push_screen(ABScreen(step.base, step.tuned, n_ctx=min(self.session.config.default_ctx, 2048),
                                          backends=self.session.chat_backend or llama_backend))
        elif isinstance(step, ExportFirst):
            log("A/B: exporting the adapter as GGUF first")
            self.action_export()
        elif isinstance(step, ConvertBaseFirst):
            log(f"A/B: the base is an HF folder; converting it to {step.out} first")
            self._set_job(jobs.CONVERT)
            jobs.start_convert(self, self.base_path, step.out, self._merge_type(), self.cancel_event)
        else:
            log("A/B: merging first")
            self.action_merge()
