"""The Train pane: LoRA fine-tuning from the keyboard, over the same core functions as ``tuillm train``/``merge``/
``export-lora``.

Top to bottom (one scrolling column, so it reads at 80x24): base model, dataset and output folder (paths complete
as you type); a preview of the first examples as the model will see them, with the part that carries loss marked
(``train_preview``); the parameters (``train_form``, generated from the declared training options) with the memory
estimate; Start/Cancel; while it runs the loss plot, tokens/s, ETA, RAM and the log (``train_run``); when it ends,
merge to GGUF, export the adapter, open Chat with the result, and the A/B view (``tui.screens.ab``).

The jobs (one at a time) and the actions on a finished adapter live in ``train_results.TrainJobs``, which this
class builds on; here are the layout, the keys, the form with its preview and memory estimate, and starting a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Checkbox, Collapsible, Input, Label, Select, Static

from tuillm.convert.types import MERGE_TYPE_NAMES
from tuillm.core.errors import TuillmError
from tuillm.core.options import OptionError, option_map
from tuillm.core.paths import expand_user
from tuillm.core.text import safe_line
from tuillm.core.train.memory import ModelShape
from tuillm.core.train.options import TRAIN_OPTIONS, TrainConfig
from tuillm.core.train.preview import Preview
from tuillm.tui import keymap
from tuillm.tui.panes import train_jobs as jobs
from tuillm.tui.panes.train_form import TrainForm, memory_text, replace_question
from tuillm.tui.panes.train_preview import PreviewKey, PreviewView
from tuillm.tui.panes.train_results import TrainJobs
from tuillm.tui.panes.train_run import RunView, cancel_question, done_line
from tuillm.tui.screens.confirm import ConfirmScreen
from tuillm.tui.widgets.path_input import PathInput

DEFAULT_MERGE_TYPE = "q8_0"  # near lossless, and written directly (no llama.cpp quantizer run)
MAX_LEN = option_map(TRAIN_OPTIONS)["max_len"]  # the preview reads the field as Start does
PREVIEW_INPUTS = ("train-base", "train-data", "train-max_len")  # typing in these reads the preview again


class TrainPane(TrainJobs):
    HELP_TITLE = "Train pane"
    BINDINGS = keymap.TRAIN
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
    #train-destination {
        width: 100%;  /* as wide as the pane, the folder wraps instead of being cut */
        color: $text-muted;
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
    TrainPane.-narrow .train-buttons Button {
        min-width: 0;
    }
    """

    class OpenInChat(Message):
        """Chat with this model: the app shows the Chat pane with it."""

        def __init__(self, path: Path, name: str) -> None:
            super().__init__()
            self.path = path
            self.name = name

    @property
    def preview(self) -> Preview | None:
        return self.query_one(PreviewView).preview

    @property
    def preview_error(self) -> str | None:
        return self.query_one(PreviewView).error

    @property
    def shape(self) -> ModelShape | None:
        return self.query_one(PreviewView).shape

    # --- layout -------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Label("Model and data", classes="train-heading")
        yield from self._path_row("Base", PathInput("demo", placeholder="demo, a model name, a GGUF or an HF folder",
                                                    id="train-base"))
        yield from self._path_row("Data", PathInput(
            placeholder="JSONL file (alpaca, messages, sharegpt, prompt/completion, text)", id="train-data",
            accept=lambda p: p.suffix in (".jsonl", ".json")))
        yield from self._path_row("Output", PathInput(placeholder="adapter folder (default: beside the data)",
                                                      id="train-output"))
        with Collapsible(title="Preview (first examples as the model sees them)", collapsed=False,
                         id="train-preview-box"):
            yield PreviewView(self.session.config, id="train-preview-scroll")
        with Collapsible(title="Parameters", collapsed=True, id="train-params"):
            yield TrainForm()
        yield Static(Text("Memory estimate: choose a base", style="dim"), id="train-memory")
        with Horizontal(classes="train-buttons"):
            yield Button("Start", id="train-start", variant="primary", compact=True, tooltip="Ctrl+S")
            yield Button("Cancel", id="train-cancel", variant="error", compact=True, disabled=True,
                         tooltip="Esc: stop after this step, save a checkpoint")
        yield Label("Run", classes="train-heading")
        yield RunView()
        yield Label("Result", classes="train-heading")
        with Horizontal(classes="train-buttons"):
            yield Select([(t, t) for t in MERGE_TYPE_NAMES], value=DEFAULT_MERGE_TYPE, allow_blank=False,
                         id="train-merge-type", tooltip="GGUF type of the merged model", compact=True)
            yield Button("Merge", id="train-merge", compact=True, disabled=True, tooltip=keymap.key_hint("train.merge"))
            yield Button("Export LoRA", id="train-export", compact=True, disabled=True,
                         tooltip=keymap.key_hint("train.export"))
            yield Button("Chat", id="train-chat", compact=True, disabled=True, tooltip=keymap.key_hint("train.chat"))
            yield Button("A/B", id="train-ab", compact=True, disabled=True, tooltip=keymap.key_hint("train.ab"))
        folder = self.output_folder()
        where = f"to {folder}, listed in Models" if folder is not None else "into the adapter's folder"
        yield Label(safe_line(f"Merge and Export write {where}"), markup=False, id="train-destination")
        yield Static("", id="train-result")

    @staticmethod
    def _path_row(label: str, field: PathInput) -> ComposeResult:
        with Horizontal(classes="train-row"):
            yield Label(label, classes="train-label")
            yield field

    def on_mount(self) -> None:
        for path_input in self.query(PathInput):
            path_input.compact = True  # PathInput takes no `compact` argument; one line each, as in the form
        self.call_after_refresh(self._schedule_preview)

    def on_resize(self) -> None:
        # Below 80 columns the Result row of 16-column buttons ran past the edge: Chat cut, A/B out of sight.
        self.set_class(self.outer_size.width < 80, "-narrow")

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
        self.screen.set_focus(self.query_one("#train-data", Input))  # at once: see ModelsPane.focus_default

    def work_in_progress(self) -> list[str]:
        if self.job == "train":
            return ["training (a checkpoint is saved)"]
        return [] if self.job is None else [" ".join(jobs.NOUNS[self.job]) + " (the file being written is removed)"]

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Train: start", "Start training with the pane's settings", self.action_start)
        yield SystemCommand("Train: cancel", "Stop after this step and save a checkpoint", self.action_cancel)
        yield SystemCommand("Train: merge to GGUF", "Merge the adapter into the base", self.action_merge)
        yield SystemCommand("Train: export LoRA adapter", "Write a GGUF LoRA adapter", self.action_export)
        yield SystemCommand("Train: open in Chat", "Chat with the merged model", self.action_open_chat)
        yield SystemCommand("Train: A/B compare", "One prompt to base and tuned, side by side", self.action_ab)

    # --- the form, the preview and the memory estimate ------------------------------------------------------------
    def _path(self, key: str) -> str:
        return self.query_one(f"#train-{key}", PathInput).value.strip()

    def form_config(self, base: str, data: str, output: str) -> TrainConfig:
        """A checked TrainConfig from the form; a TuillmError says what is wrong."""
        return self.query_one(TrainForm).config(base, data, output)

    def default_output(self, data: Path, resume: bool = False) -> Path:
        """``<data folder>/<data stem>-lora``, numbered past folders that hold a finished adapter or the checkpoints
        of a run that was stopped (a quit mid-run), so a new run never lands on either; with ``resume``, the first
        folder that holds checkpoints to continue."""
        from tuillm.core.train.checkpoints import ADAPTER_CONFIG, CHECKPOINTS, latest_checkpoint

        n = 1
        while True:
            candidate = data.with_name(f"{data.stem}-lora" + (f"-{n}" if n > 1 else ""))
            finished = (candidate / ADAPTER_CONFIG).exists()
            if resume and not finished and latest_checkpoint(candidate) is not None:
                return candidate
            if not finished and not (candidate / CHECKPOINTS).exists():
                return candidate
            n += 1

    def _preview_key(self) -> PreviewKey | None:
        raw = self.query_one(TrainForm).raw()
        try:  # the option's own reading: a max len of -5 was previewed (44 tokens, 11 trained) as if it were fine
            max_len = MAX_LEN.parse(str(raw["max_len"]))
        except OptionError:
            return None
        return PreviewKey(self._path("base"), self._path("data"), max_len, not raw["train_on_prompt"],
                          str(raw["method"]))

    def _schedule_preview(self) -> None:
        key = self._preview_key()
        if key is not None:
            self.query_one(PreviewView).schedule(key)

    def action_preview(self) -> None:
        key = self._preview_key()
        if key is not None:
            self.query_one(PreviewView).show(key, again=True)  # the file may have changed

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in PREVIEW_INPUTS:
            self._schedule_preview()
        self._update_memory()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("train-base", "train-data"):
            event.stop()
            self.action_preview()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "train-method":  # supervised data or preference pairs: read the file again
            self.action_preview()
        self._update_memory()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "train-train_on_prompt":
            self.action_preview()
        self._update_memory()

    def on_preview_view_ready(self, _event: PreviewView.Ready) -> None:
        self._update_memory()

    def _update_memory(self) -> None:
        from tuillm.core.models.hardware import available_ram
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
        preview = self.preview
        if preview is not None and preview.examples:
            tokens = sum(e.tokens for e in preview.examples) or 1
            fraction = sum(e.trained_tokens for e in preview.examples) / tokens
        estimate = estimate_for_config(self.shape, config, fraction)
        label.update(memory_text(estimate, self.session.available_ram or available_ram()))

    # --- jobs -----------------------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self._busy():
            return
        base, data, output = self._path("base") or "demo", self._path("data"), self._path("output")
        if not data:
            self.notify("choose a training dataset (a JSONL file) first", title="Train", severity="warning")
            self.query_one("#train-data", Input).focus()
            return
        if nul := next((key for key in ("base", "data", "output") if "\x00" in self._path(key)), None):
            self.notify(f"{nul.title()}: not a path (it holds a NUL character)", title="Train", severity="error")
            return
        data_path = expand_user(data)
        if not data_path.is_file():  # "." or "/" crashed the default output (no name to put "-lora" after)
            why = "not a file" if data_path.exists() else "no such file"
            self.notify(f"Data: {safe_line(data)}: {why}", title="Train", severity="error")
            return
        resume = bool(self.query_one(TrainForm).raw()["resume"])
        out = expand_user(output) if output else self.default_output(data_path, resume)
        try:
            config = self.form_config(base, str(data_path), str(out))
        except TuillmError as exc:
            self.notify(str(exc), title="Train settings", severity="error")
            return
        if not output:
            self.query_one("#train-output", Input).value = str(out)
        question = replace_question(out, config.resume)
        if question is None:
            self._begin(config, force=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._begin(config, force=True)

        self.app.push_screen(ConfirmScreen(question), answered)

    def _begin(self, config: TrainConfig, *, force: bool) -> None:
        """The run itself; ``force``: the user agreed to replace what the output folder holds."""
        if self._busy():
            return
        self.adapter_dir = self.merged_path = self.lora_gguf = self.base_gguf = None
        self.run_config = config
        self._ab_pending = False
        run = self.query_one(RunView)
        run.reset("starting…")
        self.query_one("#train-result", Static).update("")
        self._set_job(jobs.TRAIN)
        run.scroll_visible(top=True)
        jobs.start_train(self, config, self.session.config, self.cancel_event, force=force)

    def action_cancel(self) -> None:
        if self.job is None:
            self.notify("nothing is running", title="Train", severity="warning")
            return
        if not self.cancel_event.is_set():  # Esc never stops work unasked
            job, cancel = self.job, self.cancel_event  # each job has its own event: the question is about this one
            question = ConfirmScreen(cancel_question(job, self.query_one(RunView).stepping),
                                     stands=lambda: self.job == job and self.cancel_event is cancel)
            self.app.push_screen(question, self._cancel_answered)

    def _cancel_answered(self, yes: bool | None) -> None:
        if yes and self.job is not None and not self.cancel_event.is_set():  # it may have ended meanwhile
            self.cancel_event.set()
            run = self.query_one(RunView)
            words = "stopping after this step…" if run.stepping and self.job == jobs.TRAIN else "stopping…"
            run.log(words, "yellow")
            run.show(words)

    @on(jobs.Trained)
    def _trained(self, message: jobs.Trained) -> None:
        message.stop()
        result = message.result
        self.base_path, self.adapter_dir = Path(message.config.base), Path(result.output)
        self.query_one(RunView).show(done_line(result), "green")
        self._set_result(f"Adapter: {result.output}")
        self.notify(f"adapter written to {result.output}", title="Training done")
        self._set_job(None)

    def action_open_chat(self) -> None:
        if self.merged_path is None:
            self.notify(f"merge the adapter first ({keymap.key_hint('train.merge')}): Chat opens the merged GGUF",
                        title="Train", severity="warning")
            return
        self.post_message(self.OpenInChat(self.merged_path, self.merged_path.stem))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"train-start": self.action_start, "train-cancel": self.action_cancel,
                   "train-merge": self.action_merge, "train-export": self.action_export,
                   "train-chat": self.action_open_chat, "train-ab": self.action_ab}
        action = actions.get(event.button.id or "")
        if action is not None:
            action()
