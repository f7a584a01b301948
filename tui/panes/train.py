"""The Train pane: LoRA fine-tuning from the keyboard, over the same core functions as ``tuillm train``/``merge``/
``export-lora``.

Top to bottom (one scrolling column, so it reads at 80x24): base model, dataset and output folder (paths complete
as you type); a preview of the first examples as the model will see them, with the part that carries loss marked;
the parameters with the memory estimate; Start/Cancel; while it runs the loss plot (train and eval), tokens/s,
ETA, RAM and the log; when it ends, merge to GGUF, export the adapter, open Chat with the result, and the A/B view.

Every long step (preview, training, merge, export, converting the base for A/B) runs in a thread worker that posts
the core's events back as messages; nothing here imports torch (the core does, inside the training functions).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.widgets import Button, Checkbox, Collapsible, Input, Label, ProgressBar, RichLog, Select, Static

from tuillm.core.errors import TuillmError, error_text
from tuillm.core.events import Cancelled, Log, Metric, Progress
from tuillm.core.models.metadata import format_bytes
from tuillm.core.train.loop import SCHEDULES, TrainConfig, format_duration, parse_targets
from tuillm.tui.session import Session
from tuillm.tui.widgets.loss_plot import LossPlot
from tuillm.tui.widgets.path_input import PathInput

PREVIEW_EXAMPLES = 3
PREVIEW_DELAY_S = 0.4  # after the last keystroke in a path, before the preview is read again
MERGE_TYPES = ("q8_0", "f16", "bf16", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
TRAINED_STYLE = "bold green"
PROMPT_STYLE = "dim"
CUT_STYLE = "red strike"
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

# (field of TrainConfig, label, kind, tooltip): the form, in reading order (two per row).
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("rank", "Rank", "int", "LoRA rank: the adapter's size"),
    ("alpha", "Alpha", "float", "LoRA alpha; the update is scaled by alpha/rank"),
    ("max_len", "Max len", "int", "Tokens per example; longer ones are cut"),
    ("batch_size", "Batch", "int", "Examples per micro-batch"),
    ("epochs", "Epochs", "float", "Passes over the data"),
    ("max_steps", "Max steps", "int?", "Stop after this many steps (empty: by epochs)"),
    ("lr", "LR", "float", "Peak learning rate"),
    ("grad_accum", "Accum", "int", "Micro-batches per optimizer step"),
    ("dropout", "Dropout", "float", "LoRA dropout"),
    ("warmup", "Warmup", "float", "A fraction of the steps if < 1, else a step count"),
    ("eval_fraction", "Eval split", "float", "Fraction of the examples held out for eval loss"),
    ("eval_every", "Eval every", "int?", "Eval loss every N steps (empty: at the end)"),
    ("save_every", "Save every", "int", "Checkpoint every N steps (0: only when cancelled)"),
    ("seed", "Seed", "int", "Shuffling and initialisation seed"),
    ("targets", "Targets", "text", "Module names (comma-separated), default or all-linear"),
)
SELECTS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("schedule", "Schedule", SCHEDULES, "Learning-rate schedule after warmup"),
    ("device", "Device", ("auto", "cpu", "cuda", "mps"), "auto: CUDA, then MPS, then CPU"),
    ("dtype", "Dtype", ("auto", "float32", "bfloat16", "float16"), "auto: float32 on CPU, bf16 on a GPU"),
    ("packing", "Packing", ("auto", "row", "each"), "How a micro-batch runs (no padding either way)"),
)
CHECKS: tuple[tuple[str, str, str], ...] = (
    ("assistant_only", "Loss on answers only", "Only the assistant's tokens carry loss"),
    ("grad_checkpointing", "Grad checkpointing", "Trade compute for memory"),
    ("resume", "Resume", "Continue from the output folder's latest checkpoint"),
)



def _fmt_default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def preview_text(preview: Any, max_len: int) -> Text:
    """The preview as styled text: what carries loss in green, the prompt dim, what the cut drops struck out."""
    from tuillm.core.train.preview import CUT, TRAINED, describe

    styles = {TRAINED: TRAINED_STYLE, CUT: CUT_STYLE}
    out = Text()
    out.append(f"{preview.path.name}: {preview.count} examples, {preview.format} format, template: "
               f"{preview.template}\n", "bold")
    out.append("green", TRAINED_STYLE).append(": carries loss · ").append("dim", PROMPT_STYLE)
    out.append(": prompt (no loss) · ").append("struck", CUT_STYLE).append(f": beyond {max_len} tokens, cut\n")
    for example in preview.examples:
        out.append("\n" + describe(example, max_len) + "\n", "italic")
        for text, kind in example.pieces:
            out.append(text, styles.get(kind, PROMPT_STYLE))
        if not out.plain.endswith("\n"):
            out.append("\n")
    return out


class TrainPane(VerticalScroll):
    HELP_TITLE = "Train pane"
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="train.start", tooltip="Start training with these settings"),
        Binding("escape", "cancel", "Cancel", id="train.cancel",
                tooltip="Stop after the current step and save a checkpoint (Resume continues it)"),
        Binding("ctrl+g", "merge", "Merge", id="train.merge",
                tooltip="Merge the adapter into the base and write a GGUF of the chosen type"),
        Binding("ctrl+y", "export", "Export LoRA", show=False, id="train.export",
                tooltip="Write the adapter as a GGUF LoRA adapter for llama.cpp"),
        Binding("ctrl+o", "open_chat", "Chat", id="train.chat", tooltip="Open the merged model in the Chat pane"),
        Binding("ctrl+n", "ab", "A/B", show=False, id="train.ab",
                tooltip="Send one prompt to the base and the tuned model, side by side"),
        Binding("ctrl+r", "preview", "Preview", show=False, id="train.preview",
                tooltip="Read the dataset again and show its first examples"),
    ]
    DEFAULT_CSS = """
    TrainPane {
        height: 1fr;
        padding: 0 1;
    }
    TrainPane .train-row {
        height: 1;
    }
    TrainPane .train-label {
        width: 9;
        color: $text-muted;
    }
    TrainPane .train-row Input {
        width: 1fr;
    }
    TrainPane .train-heading {
        height: 1;
        margin-top: 1;
        text-style: bold;
        color: $accent;
    }
    TrainPane Collapsible {
        padding: 0;
        border-top: none;
    }
    TrainPane Collapsible Contents {
        padding: 0 0 0 1;
    }
    #train-preview-scroll {
        height: auto;
        max-height: 12;
    }
    #train-preview {
        height: auto;
    }
    #train-form {
        grid-size: 4;
        grid-columns: 11 1fr 11 1fr;
        grid-rows: 1;
        grid-gutter: 0 1;
        height: auto;
    }
    #train-form .train-label {
        width: 11;
    }
    #train-checks {
        height: auto;
    }
    #train-checks Checkbox {
        width: auto;
    }
    #train-memory {
        height: auto;
        color: $text-muted;
    }
    TrainPane Horizontal.train-buttons {
        height: 1;
        margin-top: 1;
    }
    TrainPane .train-buttons Button {
        margin-right: 1;
    }
    TrainPane .train-buttons Select {
        width: 14;
        margin-right: 1;
    }
    #train-stats {
        height: 1;
    }
    #train-progress {
        height: 1;
    }
    #train-plot {
        height: 10;
    }
    #train-log {
        height: 8;
        border: none;
        background: $boost;
    }
    """

    class JobEvent(Message):
        """A core event (Progress, Log, Metric) of the running job, posted from its worker thread."""

        def __init__(self, event: Any) -> None:
            super().__init__()
            self.event = event

    class JobEnded(Message):
        def __init__(self, job: str, result: Any = None, error: str | None = None, cancelled: bool = False,
                     then: Callable[[], None] | None = None) -> None:
            super().__init__()
            self.job = job  # "train" | "merge" | "export" | "convert"
            self.result = result
            self.error = error
            self.cancelled = cancelled
            self.then = then

    class PreviewReady(Message):
        def __init__(self, key: tuple, preview: Any = None, error: str | None = None, shape: Any = None) -> None:
            super().__init__()
            self.key = key
            self.preview = preview
            self.error = error
            self.shape = shape

    class OpenInChat(Message):
        """Chat with this model: the app shows the Chat pane with it."""

        def __init__(self, path: Path, name: str) -> None:
            super().__init__()
            self.path = path
            self.name = name

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.job: str | None = None  # the running job, one at a time
        self.cancel_event = threading.Event()
        self.base_path: Path | None = None  # resolved base of the last run
        self.adapter_dir: Path | None = None  # a finished adapter
        self.merged_path: Path | None = None
        self.lora_gguf: Path | None = None
        self.base_gguf: Path | None = None  # the base as a GGUF, for A/B
        self.preview: Any = None
        self.preview_error: str | None = None
        self.shape: Any = None  # of the base in the form, for the memory estimate
        self.stats: dict[str, float] = {}
        self._preview_key: tuple | None = None
        self._preview_timer: Any = None
        self._notified_error: str | None = None
        self._tokenizers: dict[Path, Any] = {}  # used by the preview worker only

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        # File names and error text are never markup.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # --- layout -------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Label("Model and data", classes="train-heading")
        with Horizontal(classes="train-row"):
            yield Label("Base", classes="train-label")
            yield PathInput("demo", placeholder="demo, a model name, a GGUF or an HF folder", id="train-base")
        with Horizontal(classes="train-row"):
            yield Label("Data", classes="train-label")
            yield PathInput(placeholder="JSONL file (alpaca, messages, sharegpt, prompt/completion, text)",
                            id="train-data", accept=lambda p: p.suffix in (".jsonl", ".json"))
        with Horizontal(classes="train-row"):
            yield Label("Output", classes="train-label")
            yield PathInput(placeholder="adapter folder (default: beside the data)", id="train-output")
        with Collapsible(title="Preview (first examples as the model sees them)", collapsed=False,
                         id="train-preview-box"):
            with VerticalScroll(id="train-preview-scroll"):
                yield Static(Text("Choose a dataset to see its first examples.", style="dim"), id="train-preview")
        with Collapsible(title="Parameters", collapsed=True, id="train-params"):
            with Grid(id="train-form"):
                for key, label, _kind, tooltip in FIELDS:
                    yield Label(label, classes="train-label")
                    yield Input(_fmt_default(_DEFAULTS[key]), id=f"train-{key}", tooltip=tooltip, compact=True)
                for key, label, choices, tooltip in SELECTS:
                    yield Label(label, classes="train-label")
                    yield Select([(c, c) for c in choices], value=_DEFAULTS[key], allow_blank=False,
                                 id=f"train-{key}", tooltip=tooltip, compact=True)
            with Horizontal(id="train-checks"):
                for key, label, tooltip in CHECKS:
                    yield Checkbox(label, bool(_DEFAULTS[key]), id=f"train-{key}", tooltip=tooltip, compact=True)
        yield Static(Text("Memory estimate: choose a base", style="dim"), id="train-memory")
        with Horizontal(classes="train-buttons"):
            yield Button("Start", id="train-start", variant="primary", compact=True, tooltip="Ctrl+S")
            yield Button("Cancel", id="train-cancel", variant="error", compact=True, disabled=True,
                         tooltip="Esc: stop after this step, save a checkpoint")
        yield Label("Run", classes="train-heading")
        yield Static(Text("Not started.", style="dim"), id="train-stats")
        yield ProgressBar(total=None, show_eta=False, id="train-progress")
        yield LossPlot(id="train-plot")
        yield RichLog(id="train-log", wrap=True, markup=False, max_lines=2000, min_width=20)
        yield Label("Result", classes="train-heading")
        with Horizontal(classes="train-buttons"):
            yield Select([(t, t) for t in MERGE_TYPES], value="q8_0", allow_blank=False, id="train-merge-type",
                         tooltip="GGUF type of the merged model", compact=True)
            yield Button("Merge", id="train-merge", compact=True, disabled=True, tooltip="Ctrl+G")
            yield Button("Export LoRA", id="train-export", compact=True, disabled=True, tooltip="Ctrl+Y")
            yield Button("Chat", id="train-chat", compact=True, disabled=True, tooltip="Ctrl+O")
            yield Button("A/B", id="train-ab", compact=True, disabled=True, tooltip="Ctrl+N")
        yield Static("", id="train-result")

    def on_mount(self) -> None:
        for path_input in self.query(PathInput):
            path_input.compact = True  # PathInput takes no `compact` argument; one line each, as in the form
        self.call_after_refresh(self._schedule_preview)

    def on_unmount(self) -> None:
        # Closing the app mid-run: the training stops after its step and saves a checkpoint (Resume continues).
        self.cancel_event.set()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # None: listed, greyed, when it cannot run now (so the key is known before it is needed).
        ready = self.job is None
        if action == "start":
            return True if ready else None
        if action == "cancel":
            return True if not ready else None
        if action in ("merge", "export", "ab"):
            return True if ready and self.adapter_dir is not None else None
        if action == "open_chat":
            return True if ready and self.merged_path is not None else None
        return True

    def focus_default(self) -> None:
        self.query_one("#train-data", Input).focus()

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Train: start", "Start training with the pane's settings", self.action_start)
        yield SystemCommand("Train: cancel", "Stop after this step and save a checkpoint", self.action_cancel)
        yield SystemCommand("Train: merge to GGUF", "Merge the adapter into the base", self.action_merge)
        yield SystemCommand("Train: export LoRA adapter", "Write a GGUF LoRA adapter", self.action_export)
        yield SystemCommand("Train: open in Chat", "Chat with the merged model", self.action_open_chat)
        yield SystemCommand("Train: A/B compare", "One prompt to base and tuned, side by side", self.action_ab)

    # --- the form -------------------------------------------------------------------------------------------------
    def _value(self, key: str) -> Any:
        widget = self.query_one(f"#train-{key}")
        if isinstance(widget, (Checkbox, Select)):
            return widget.value
        return widget.value.strip()

    def form_config(self, base: str, data: str, output: str) -> TrainConfig:
        """A TrainConfig from the form; a TuillmError names every field that is not a number."""
        values: dict[str, Any] = {}
        bad = []
        for key, label, kind, _tooltip in FIELDS:
            text = self._value(key)
            try:
                if kind == "text":  # the LoRA targets, the one text field
                    values[key] = parse_targets(text)
                elif kind == "int?":
                    values[key] = int(text) if text else None
                elif kind == "int":
                    values[key] = int(text)
                else:
                    values[key] = float(text)
            except ValueError:
                bad.append(label)
        if bad:
            raise TuillmError(f"not a number: {', '.join(bad)}")
        for key, *_ in SELECTS:
            values[key] = self._value(key)
        for key, *_ in CHECKS:
            values[key] = bool(self._value(key))
        config = TrainConfig(base=base, data=[data], output=output, **values)
        config.check()
        return config

    def default_output(self, data: Path) -> Path:
        """``<data folder>/<data stem>-lora``, numbered when a finished adapter is already there."""
        candidate = data.with_name(f"{data.stem}-lora")
        n = 2
        while (candidate / "adapter_config.json").exists():
            candidate = data.with_name(f"{data.stem}-lora-{n}")
            n += 1
        return candidate

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("train-base", "train-data", "train-max_len"):
            self._schedule_preview()
        self._update_memory()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("train-base", "train-data"):
            event.stop()
            self.action_preview()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._update_memory()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "train-assistant_only":
            self.action_preview()
        self._update_memory()

    # --- preview and memory estimate ------------------------------------------------------------------------------
    def _schedule_preview(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY_S, self._refresh_preview)

    def action_preview(self) -> None:
        self._preview_key = None  # read again even if nothing changed (the file may have)
        self._refresh_preview()

    def _refresh_preview(self) -> None:
        base, data = self._value("base"), self._value("data")
        try:
            max_len = int(self._value("max_len"))
        except ValueError:
            return
        key = (base, data, max_len, bool(self._value("assistant_only")))
        if key == self._preview_key:
            return
        self._preview_key = key
        self._read_preview(key)

    @work(thread=True, exclusive=True, group="train-preview", exit_on_error=False)
    def _read_preview(self, key: tuple) -> None:
        from tuillm.core.models.catalog import resolve_model
        from tuillm.core.train.data import load_dataset
        from tuillm.core.train.memory import model_shape
        from tuillm.core.train.preview import base_tokenizer, preview

        base, data, max_len, assistant_only = key
        shape = None
        try:
            path = resolve_model(base or "demo", self.session.config)
            shape = model_shape(path)
            if not data:
                self.post_message(self.PreviewReady(key, shape=shape))
                return
            dataset = load_dataset(Path(data).expanduser())  # a bad file is reported before the tokenizer loads
            if path not in self._tokenizers:
                self._tokenizers = {path: base_tokenizer(path)}  # the last base's only: a GGUF's holds a Llama
            result = preview(dataset, self._tokenizers[path], n=PREVIEW_EXAMPLES, max_len=max_len,
                             assistant_only=assistant_only)
        except Exception as exc:  # shown in the pane: a bad file must not end the worker silently
            self.post_message(self.PreviewReady(key, error=error_text(exc), shape=shape))
            return
        self.post_message(self.PreviewReady(key, preview=result, shape=shape))

    def on_train_pane_preview_ready(self, event: PreviewReady) -> None:
        if event.key != self._preview_key:
            return  # the form changed since
        self.shape = event.shape
        self.preview = event.preview
        self.preview_error = event.error
        box = self.query_one("#train-preview", Static)
        if event.error:
            box.update(Text(event.error, style="red"))
            data = Path(event.key[1]).expanduser() if event.key[1] else None
            # A file that exists but cannot be used is worth a notification; a path being typed is not.
            if data is not None and data.is_file() and event.error != self._notified_error:
                self._notified_error = event.error
                self.notify(event.error, title="Dataset", severity="error", timeout=15)
        elif event.preview is not None:
            self._notified_error = None
            box.update(preview_text(event.preview, event.key[2]))
        else:
            box.update(Text("Choose a dataset to see its first examples.", style="dim"))
        self._update_memory()

    def _update_memory(self) -> None:
        from tuillm.core.train.memory import estimate_for_config

        label = self.query_one("#train-memory", Static)
        if self.shape is None:
            return
        try:
            config = self.form_config("", "", "")
        except TuillmError as exc:
            label.update(Text(f"Memory estimate: {exc}", style="yellow"))
            return
        fraction = 1.0
        if self.preview is not None and self.preview.examples:
            tokens = sum(e.tokens for e in self.preview.examples) or 1
            fraction = sum(e.trained_tokens for e in self.preview.examples) / tokens
        est = estimate_for_config(self.shape, config, fraction)
        from tuillm.core.models.hardware import available_ram

        avail = available_ram()
        where = f"{est.device}, {est.dtype}"
        text = (f"Training memory ≈ {format_bytes(est.total_bytes)} ({where}): weights "
                f"{format_bytes(est.weights_bytes)}, LoRA {est.lora_params / 1e6:.1f}M params + optimizer "
                f"{format_bytes(est.lora_bytes)}, activations {format_bytes(est.activation_bytes)}")
        style = ""
        if est.device == "cpu" and avail and est.total_bytes > avail:
            text += f" · more than the {format_bytes(avail)} available"
            style = "yellow"
        label.update(Text(text, style=style))

    # --- jobs -----------------------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        if self.job is not None:
            self.notify(f"{self.job} is running: Esc cancels it", title="Train", severity="warning")
            return True
        return False

    def _set_job(self, job: str | None) -> None:
        self.job = job
        self.query_one("#train-start", Button).disabled = job is not None
        self.query_one("#train-cancel", Button).disabled = job is None
        done = self.adapter_dir is not None and job is None
        for name in ("merge", "export", "ab"):
            self.query_one(f"#train-{name}", Button).disabled = not done
        self.query_one("#train-chat", Button).disabled = self.merged_path is None or job is not None
        self.refresh_bindings()

    def _log(self, text: str, style: str = "") -> None:
        self.query_one("#train-log", RichLog).write(Text(text, style=style))

    def _emit(self, event: Any) -> None:
        # Called on the worker thread: post_message is thread-safe.
        self.post_message(self.JobEvent(event))

    def action_start(self) -> None:
        if self._busy():
            return
        base, data, output = self._value("base") or "demo", self._value("data"), self._value("output")
        if not data:
            self.notify("choose a training dataset (a JSONL file) first", title="Train", severity="warning")
            self.query_one("#train-data", Input).focus()
            return
        data_path = Path(data).expanduser()
        out = Path(output).expanduser() if output else self.default_output(data_path)
        try:
            config = self.form_config(base, str(data_path), str(out))
        except TuillmError as exc:
            self.notify(str(exc), title="Train settings", severity="error")
            return
        if not output:
            self.query_one("#train-output", Input).value = str(out)
        self.adapter_dir = self.merged_path = self.lora_gguf = self.base_gguf = None
        self.stats = {}
        self.query_one(LossPlot).clear()
        self.query_one("#train-log", RichLog).clear()
        self.query_one("#train-result", Static).update("")
        self.cancel_event = threading.Event()
        self._set_job("train")
        self._show_stats("starting…")
        self.query_one("#train-stats").scroll_visible(top=True)
        self._train(config)

    @work(thread=True, exclusive=True, group="train-job", exit_on_error=False)
    def _train(self, config: TrainConfig) -> None:
        from tuillm.core.models.catalog import resolve_model
        from tuillm.core.train.data import load_dataset
        from tuillm.core.train.loop import train

        try:
            for path in config.data:  # bad data is reported before the base model is even looked at
                load_dataset(path)
            config.base = str(resolve_model(config.base, self.session.config))
            self.post_message(self.JobEvent(Log(f"base {config.base}; adapter to {config.output}")))
            result = train(config, emit=self._emit, cancel=self.cancel_event)
        except Cancelled:
            self.post_message(self.JobEnded("train", config, cancelled=True))
        except Exception as exc:
            self.post_message(self.JobEnded("train", config, error=error_text(exc)))
        else:
            self.post_message(self.JobEnded("train", (config, result)))

    def action_cancel(self) -> None:
        if self.job is None:
            self.notify("nothing is running", title="Train", severity="warning")
            return
        if not self.cancel_event.is_set():
            self.cancel_event.set()
            self._log("stopping after this step…", "yellow")
            self._show_stats("stopping after this step…")

    def on_train_pane_job_event(self, message: JobEvent) -> None:
        event = message.event
        if isinstance(event, Log):
            style = {"warning": "yellow", "error": "red"}.get(event.level, "")
            self._log(event.message, style)
        elif isinstance(event, Metric):
            self.stats[event.name] = event.value
            if event.name == "loss":
                self.query_one(LossPlot).add_train(event.step, event.value)
            elif event.name == "eval_loss":
                self.query_one(LossPlot).add_eval(event.step, event.value)
        elif isinstance(event, Progress):
            bar = self.query_one(ProgressBar)
            if event.total:
                bar.update(total=event.total, progress=event.done)
            else:
                bar.update(total=None)
            if event.stage == "train":
                self._show_train_stats(event)
            else:
                self._show_stats(f"{event.stage}: {event.message}")

    def _show_stats(self, text: str, style: str = "") -> None:
        self.query_one("#train-stats", Static).update(Text(text, style=style))

    def _show_train_stats(self, event: Progress) -> None:
        s = self.stats
        parts = [f"step {event.done:g}/{event.total:g}"]
        if "loss" in s:
            parts.append(f"loss {s['loss']:.3f}")
        if "eval_loss" in s:
            parts.append(f"eval {s['eval_loss']:.3f}")
        if "tokens_per_s" in s:
            parts.append(f"{s['tokens_per_s']:.0f} tok/s")
        if "eta_s" in s:
            parts.append(f"ETA {format_duration(s['eta_s'])}")
        if "memory_bytes" in s:
            parts.append(f"RAM {format_bytes(s['memory_bytes'])}")
        self._show_stats(" · ".join(parts))

    def on_train_pane_job_ended(self, event: JobEnded) -> None:
        job = event.job
        bar = self.query_one(ProgressBar)
        if event.cancelled:
            where = event.result.output if job == "train" else ""
            text = (f"cancelled: the checkpoint is in {where}/checkpoints (tick Resume and Start to continue)"
                    if job == "train" else f"{job} cancelled")
            self._log(text, "yellow")
            self._show_stats(text, "yellow")
            self.notify(text, title="Train", severity="warning", timeout=10)
        elif event.error is not None:
            self._log(f"{job} failed: {event.error}", "red")
            self._show_stats(f"{job} failed", "red")
            bar.update(total=100, progress=0)
            self.notify(event.error, title=f"{job.title()} failed", severity="error", timeout=15)
        elif job == "train":
            config, result = event.result
            self.base_path, self.adapter_dir = Path(config.base), Path(result.output)
            final = f"loss {result.train_loss:.3f}" if result.train_loss is not None else ""
            if result.eval_loss is not None:
                final += f", eval {result.eval_loss:.3f}"
            self._show_stats(f"done: {result.steps} steps in {format_duration(result.seconds)}; {final}", "green")
            self._set_result(f"Adapter: {result.output}")
            self.notify(f"adapter written to {result.output}", title="Training done")
        elif job == "merge":
            self.merged_path = Path(event.result)
            self._show_stats(f"merged: {self.merged_path.name}", "green")
            self._set_result(f"Merged GGUF: {self.merged_path}")
            self.notify(f"wrote {self.merged_path}", title="Merge done")
        elif job == "export":
            self.lora_gguf = Path(event.result)
            self._show_stats(f"exported: {self.lora_gguf.name}", "green")
            self._set_result(f"LoRA GGUF: {self.lora_gguf}")
            self.notify(f"wrote {self.lora_gguf}", title="Export done")
        elif job == "convert":
            self.base_gguf = Path(event.result)
            self._set_result(f"Base GGUF (for A/B): {self.base_gguf}")
        self._set_job(None)
        if event.then is not None and event.error is None and not event.cancelled:
            event.then()

    def _set_result(self, line: str) -> None:
        result = self.query_one("#train-result", Static)
        previous = str(result.content)
        result.update(Text((previous + "\n" if previous else "") + line))

    def _need_adapter(self) -> bool:
        if self.adapter_dir is None or self.base_path is None:
            self.notify("train an adapter first (Ctrl+S starts)", title="Train", severity="warning")
            return False
        return not self._busy()

    def action_merge(self, then: Callable[[], None] | None = None) -> None:
        if not self._need_adapter():
            return
        adapter, base = self.adapter_dir, self.base_path
        assert adapter is not None and base is not None
        out_type = str(self.query_one("#train-merge-type", Select).value)
        out = adapter / f"{adapter.name}-{out_type}.gguf"
        self.cancel_event = threading.Event()
        self._set_job("merge")
        self._log(f"merging into {out}")
        self._run_job("merge", then, lambda emit, cancel: _merge(base, adapter, out, out_type, emit, cancel))

    def action_export(self, then: Callable[[], None] | None = None) -> None:
        if not self._need_adapter():
            return
        adapter, base = self.adapter_dir, self.base_path
        assert adapter is not None and base is not None
        out = adapter / f"{adapter.name}-lora-f16.gguf"
        self._set_job("export")
        self._log(f"exporting the adapter to {out}")
        self._run_job("export", then, lambda emit, cancel: _export(adapter, base, out, emit))

    @work(thread=True, exclusive=True, group="train-job", exit_on_error=False)
    def _run_job(self, job: str, then: Callable[[], None] | None, run: Callable[[Any, threading.Event], Any]) -> None:
        try:
            result = run(self._emit, self.cancel_event)
        except Cancelled:
            self.post_message(self.JobEnded(job, cancelled=True))
        except Exception as exc:
            self.post_message(self.JobEnded(job, error=error_text(exc)))
        else:
            self.post_message(self.JobEnded(job, result, then=then))

    def action_open_chat(self) -> None:
        if self.merged_path is None:
            self.notify("merge the adapter first (Ctrl+G): Chat opens the merged GGUF", title="Train",
                        severity="warning")
            return
        self.post_message(self.OpenInChat(self.merged_path, self.merged_path.stem))

    def action_ab(self) -> None:
        """A/B needs the base as a GGUF: the base itself when it is one (the demo is), else a conversion of the
        HF folder to the merge's type (done once, kept in the adapter folder). The tuned side is the merged GGUF,
        or the base GGUF with the exported LoRA."""
        if not self._need_adapter():
            return
        assert self.base_path is not None and self.adapter_dir is not None
        from tuillm.core.train.base import is_gguf

        if self.base_gguf is None and is_gguf(self.base_path):
            self.base_gguf = self.base_path
        if self.merged_path is None and self.lora_gguf is None:
            if self.base_gguf is not None:
                self._log("A/B: exporting the adapter as GGUF first")
                self.action_export(then=self.action_ab)
            else:
                self._log("A/B: merging first")
                self.action_merge(then=self.action_ab)
            return
        if self.base_gguf is None:
            out_type = str(self.query_one("#train-merge-type", Select).value)
            out = self.adapter_dir / f"base-{out_type}.gguf"
            if out.is_file():
                self.base_gguf = out
            else:
                self._log(f"A/B: the base is an HF folder; converting it to {out} first")
                self.cancel_event = threading.Event()
                self._set_job("convert")
                base = self.base_path
                self._run_job("convert", self.action_ab, lambda emit, cancel: _convert(base, out, out_type, emit,
                                                                                       cancel))
                return
        from tuillm.tui.screens.ab import ABScreen, Model

        if self.merged_path is not None:
            tuned = Model(self.merged_path, self.merged_path.stem)
        else:
            assert self.lora_gguf is not None
            tuned = Model(self.base_gguf, self.base_gguf.stem, lora=self.lora_gguf)
        base = Model(self.base_gguf, "demo" if self.base_gguf == _demo() else self.base_gguf.stem)
        self.app.push_screen(ABScreen(base, tuned, n_ctx=min(self.session.config.default_ctx, 2048)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"train-start": self.action_start, "train-cancel": self.action_cancel,
                   "train-merge": self.action_merge, "train-export": self.action_export,
                   "train-chat": self.action_open_chat, "train-ab": self.action_ab}
        action = actions.get(event.button.id or "")
        if action is not None:
            action()


def _demo() -> Path | None:
    from tuillm.core.paths import demo_model_path

    return demo_model_path()


def _merge(base: Any, adapter: Any, out: Path, out_type: str, emit: Any, cancel: threading.Event) -> Path:
    from tuillm.core.train.merge import merge

    return merge(Path(base), Path(adapter), out, out_type, emit=emit, cancel=cancel)


def _export(adapter: Any, base: Any, out: Path, emit: Any) -> Path:
    from tuillm.core.train.merge import export_lora

    return export_lora(Path(adapter), Path(base), out, emit=emit)


def _convert(base: Path, out: Path, out_type: str, emit: Any, cancel: threading.Event) -> Path:
    from tuillm.core.conversion.job import convert_checkpoint

    return convert_checkpoint(base, out, out_type, emit=emit, cancel=cancel)
