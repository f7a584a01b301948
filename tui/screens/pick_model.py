"""Pick the model (and optionally a LoRA adapter GGUF and its scale) a chat goes on with.

Opened by the Chat pane when the open chat's model file is gone, and by its key (``chat.pick_model``). The list is
the catalog the Models pane shows, each with its fit marker (the one verdict, ``core.models.fit``), discovered on a
worker; the adapter and scale fields start at the chat's own. The pane records the choice on the chat and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from tuillm.core.events import Emit
from tuillm.core.files import NO_SUCH_INPUT, input_problem
from tuillm.core.llama.options import LORA_SCALE
from tuillm.core.models.catalog import CatalogEntry
from tuillm.core.paths import expand_user
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui import keymap
from tuillm.tui.jobs import JobFailed, run_job
from tuillm.tui.panes.models import Discovered, discovery_job
from tuillm.tui.panes.models_table import FIT_STYLES
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.session import Session
from tuillm.tui.widgets.safe_input import SafeInput

PICK_JOB = "pick-model-catalog"
NAME_WIDTH = 40


@dataclass(frozen=True)
class ModelChoice:
    """What the user picked: a model file, and a LoRA adapter GGUF over it (None: none) at ``lora_scale``."""

    path: Path
    name: str
    adapter: Path | None = None
    lora_scale: float = LORA_SCALE.default


class CatalogFound(Message):
    def __init__(self, found: Discovered) -> None:
        super().__init__()
        self.found = found


def entry_prompt(entry: CatalogEntry) -> Text:
    """One line of the list: the name, its size and its fit marker (styled as in the Models pane)."""
    name = safe_line(entry.name)
    name = name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"
    fit = entry.estimate.fit
    line = Text(f"{name:<{NAME_WIDTH}} {format_bytes(entry.info.size_bytes):>9}  ")
    line.append(fit, style=FIT_STYLES.get(fit, ""))
    return line


def parse_choice(entry: CatalogEntry, adapter_text: str, scale_text: str) -> ModelChoice:
    """The choice from the form; a ValueError names a bad field (an adapter that is not a file, a scale out of
    range). Whether the file is really a LoRA adapter GGUF is said by the load, as for ``tuillm chat --lora``."""
    adapter: Path | None = None
    if adapter_text.strip():
        adapter = expand_user(adapter_text.strip())
        problem = input_problem(adapter)  # first: is_file() raises for a name too long, or behind EACCES
        if problem not in (None, NO_SUCH_INPUT):
            raise ValueError(f"{adapter}: {problem}")
        if not adapter.is_file():
            raise ValueError(f"{adapter}: no such adapter file")
        adapter = adapter.absolute()
    scale = LORA_SCALE.parse_field(scale_text) if scale_text.strip() else LORA_SCALE.default
    return ModelChoice(entry.path, entry.name, adapter, scale)


class PickModelScreen(ModalScreen[ModelChoice | None]):
    HELP_TITLE = "Pick a model for this chat"
    DEFAULT_CSS = DIALOG_CSS + """
    PickModelScreen { align: center middle; }
    #pick-model-list { height: auto; max-height: 12; margin-bottom: 1; }
    #pick-model-adapter-row { height: auto; }
    #pick-model-adapter-row Label { width: auto; padding-right: 1; }
    #pick-model-adapter { width: 1fr; margin-right: 2; }
    #pick-model-scale { width: 7; }
    """
    BINDINGS = keymap.PICK_MODEL

    def __init__(self, session: Session, *, reason: str = "", current: Path | None = None,
                 adapter: Path | None = None, lora_scale: float = LORA_SCALE.default) -> None:
        super().__init__()
        self.session = session
        self.reason = reason  # why it opened (the chat's model file is gone), shown above the list
        self.current = current
        self.adapter = adapter
        self.lora_scale = lora_scale
        self.entries: list[CatalogEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label("Pick a model for this chat", classes="dialog-title")
            if self.reason:
                yield Label(safe_line(self.reason), id="pick-model-reason", markup=False)
            yield Label("Finding models…", id="pick-model-status", classes="dialog-hint", markup=False)
            yield OptionList(id="pick-model-list", compact=True)
            with Horizontal(id="pick-model-adapter-row"):
                yield Label("LoRA GGUF")
                yield SafeInput(str(self.adapter) if self.adapter else "", placeholder="none (a path to apply one)",
                            id="pick-model-adapter", compact=True)
                yield Label("scale")
                yield SafeInput(LORA_SCALE.format(self.lora_scale), id="pick-model-scale", compact=True)
            yield Label("Enter or Ctrl+S: chat with it · Esc: keep the chat's model", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        session = self.session
        dirs = session.model_dirs if session.model_dirs is not None else session.config.model_dirs

        def job(_emit: Emit) -> Discovered:
            return discovery_job(dirs, session.config, session.hardware, session.available_ram)

        run_job(self, PICK_JOB, job, CatalogFound)

    def on_catalog_found(self, event: CatalogFound) -> None:
        event.stop()
        # GGUF files only: chat loads nothing else (an HF folder offered here was refused once picked)
        self.entries = [e for e in event.found.result.entries if e.info.format == "gguf"]
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(entry_prompt(e), id=str(i)) for i, e in enumerate(self.entries)])
        status = self.query_one("#pick-model-status", Label)
        status.update(f"{len(self.entries)} models · name, size, fit" if self.entries else
                      "No models found: add a folder in Models (F3)")
        here = next((i for i, e in enumerate(self.entries) if e.path == self.current), 0)
        if self.entries:
            options.highlighted = here

    def on_job_failed(self, event: JobFailed) -> None:
        event.stop()
        self.query_one("#pick-model-status", Label).update(f"Model discovery failed: {event.error}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_pick()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_pick()

    def action_pick(self) -> None:
        index = self.query_one(OptionList).highlighted
        if index is None or not 0 <= index < len(self.entries):
            self.notify("no model to pick yet", title="Model", severity="warning", markup=False)
            return
        try:
            choice = parse_choice(self.entries[index], self.query_one("#pick-model-adapter", Input).value,
                                  self.query_one("#pick-model-scale", Input).value)
        except ValueError as exc:
            self.notify(str(exc), title="Model", severity="error", markup=False)
            return
        self.dismiss(choice)

    def action_cancel(self) -> None:
        self.dismiss(None)
