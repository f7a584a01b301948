"""One model's own load settings (context, GPU layers, threads, KV type, flash attention).

The fields are the [load] declarations (``core.settings.LOAD_SETTINGS``), checked by them as the settings file and
``tuillm chat``'s flags are; the estimate under them is the one fit verdict (``core.models.fit``) the Models pane
and ``tuillm models`` show.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from tuillm.core.models.fit import advice, load_fit
from tuillm.core.models.hardware import Hardware, default_threads
from tuillm.core.models.metadata import ModelInfo
from tuillm.core.options import Option
from tuillm.core.settings import LOAD_SETTINGS, Config, ModelDefaults, config_attr, load_options_for
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui import keymap
from tuillm.tui.jobs import JobFailed, run_job
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.safe_input import SafeInput

DEFAULT = "default"
_ON_OFF = {"on": True, "off": False}
# The titles' column is as wide as the longest title: at 60 columns the fields then keep 33, enough for the GPU
# layers' "auto · recommended 0 (CPU build)".
TITLE_WIDTH = max(len(option.title) for option in LOAD_SETTINGS.values())


def _choice_field(option: Option, own: Any, inherited: Any) -> Select[str]:
    """A list whose first entry is "default (<the [load] value>)"; for a true/false option: on and off."""
    if option.kind is bool:
        shown = "on" if inherited else "off"
        choices = list(_ON_OFF)
        value = DEFAULT if own is None else ("on" if own else "off")
    else:
        shown, choices = option.format(inherited), list(option.choices or ())
        value = DEFAULT if own is None else own
    return Select([(f"{DEFAULT} ({shown})", DEFAULT), *((c, c) for c in choices)], allow_blank=False,
                  value=value, id=f"ms-{option.setting}", compact=True)


def _inherited_text(option: Option, inherited: Any, hardware: Hardware | None) -> str:
    """The [load] value an empty field means; "auto" threads with the count they come to on ``hardware`` (None:
    this machine, read now)."""
    text = option.format(inherited)
    if inherited is None and option.name == "n_threads":
        threads = hardware.default_threads if hardware is not None else default_threads()
        text = f"{text} ({threads})"
    return text


def parse_model_defaults(texts: dict[str, str]) -> ModelDefaults:
    """The form's fields (by [load] key) as ``ModelDefaults``; an empty field or "default" leaves the [load] value
    in force. An ``OptionError`` (a ValueError) names the first bad field in the declaration's words."""
    values: dict[str, Any] = {}
    for key, option in LOAD_SETTINGS.items():
        text = texts.get(key, "").strip()
        if not text or text == DEFAULT:
            continue
        if option.kind is bool:
            values[key] = _ON_OFF[text]
        else:
            values[key] = option.parse_field(text)
    # "auto" for GPU layers / threads is the [load] behaviour's own value: kept only as "not set".
    return ModelDefaults(**{k: v for k, v in values.items() if v is not None})


class GpuLayersRecommended(Message):
    def __init__(self, n_gpu_layers: int) -> None:
        super().__init__()
        self.n_gpu_layers = n_gpu_layers  # 0: CPU build; -1: all


class ModelSettingsScreen(ModalScreen[ModelDefaults | None]):
    """A model's own context, GPU layers, threads, KV cache type and flash attention; empty fields use [load]."""

    HELP_TITLE = "Model load settings"
    DEFAULT_CSS = DIALOG_CSS + f"""
    ModelSettingsScreen {{ align: center middle; }}
    #model-settings-grid {{
        grid-size: 2;
        grid-columns: {TITLE_WIDTH} 1fr;
        grid-gutter: 0 1;
        height: auto;
    }}
    #model-settings-estimate {{ padding-top: 1; height: auto; }}
    """
    BINDINGS = keymap.MODEL_SETTINGS

    def __init__(self, config: Config, info: ModelInfo, available: int | None, offload: bool | None = None) -> None:
        super().__init__()
        self.config = config
        self.info = info
        self.available = available
        self.offload = offload  # whether llama.cpp offloads to a GPU (None: ask it)
        self.current = config.defaults_for(info.path)

    def compose(self) -> ComposeResult:
        # The app's own reading of the machine where it has one (tests fix it), else this machine's.
        hardware = getattr(getattr(self.app, "session", None), "hardware", None)
        with Vertical(classes="models-dialog"):
            yield Label(f"Load settings: {safe_line(self.info.path.name)}", classes="dialog-title", markup=False)
            yield Label("Empty: the default from Settings. Ctrl+S or Enter saves, Esc cancels.",
                        classes="dialog-hint")
            with Grid(id="model-settings-grid"):
                for key, option in LOAD_SETTINGS.items():
                    own, inherited = getattr(self.current, key), getattr(self.config, config_attr(key))
                    yield Label(option.title)
                    if option.kind is bool or option.choices is not None:
                        yield _choice_field(option, own, inherited)
                    else:
                        yield SafeInput("" if own is None else option.format(own),
                                    placeholder=_inherited_text(option, inherited, hardware), id=f"ms-{key}",
                                    compact=True)
            yield Label("", id="model-settings-estimate", markup=False)

    def on_mount(self) -> None:
        self.query_one("#ms-ctx", Input).focus()
        self._update_estimate()
        self._recommend_gpu_layers()

    def _recommend_gpu_layers(self) -> None:
        from tuillm.core.models.memory import default_gpu_layers

        if self.offload is False:  # a CPU build: nothing to ask
            self._show_recommendation(0)
            return
        # Asks llama.cpp, and nvidia-smi for free VRAM where there is one: not on the event loop.
        options = load_options_for(self.config, self.info.path)
        run_job(self, "recommend", lambda _emit: default_gpu_layers(self.info, options.n_ctx, options.kv_type,
                                                                    self.offload),
                GpuLayersRecommended)

    def on_gpu_layers_recommended(self, event: GpuLayersRecommended) -> None:
        event.stop()
        self._show_recommendation(event.n_gpu_layers)

    def _show_recommendation(self, n: int) -> None:
        text = "0 (CPU build)" if n == 0 else ("all (-1)" if n < 0 else str(n))
        field = self.query_one("#ms-n_gpu_layers", Input)
        field.placeholder = f"{field.placeholder} · recommended {text}"

    def on_job_failed(self, event: JobFailed) -> None:
        event.stop()  # no recommendation: the placeholder keeps the [load] value

    def _form(self) -> ModelDefaults:
        texts: dict[str, str] = {}
        for key in LOAD_SETTINGS:
            widget = self.query_one(f"#ms-{key}")
            texts[key] = str(widget.value) if isinstance(widget, Select | Input) else ""
        return parse_model_defaults(texts)

    def _update_estimate(self) -> None:
        label = self.query_one("#model-settings-estimate", Label)
        try:
            mine = self._form()
        except ValueError as exc:
            label.update(str(exc))
            return
        trial = replace(self.config, model_defaults={})
        trial.set_defaults_for(self.info.path, mine)
        fit = load_fit(self.info, trial, available=self.available, offload=self.offload)
        est = fit.estimate
        label.update(f"At {fit.options.n_ctx:,} tokens: about {format_bytes(est.total_bytes)} of "
                     f"{format_bytes(est.available_bytes)} available: {est.fit}\n{advice(self.info, fit)}")

    def on_input_changed(self) -> None:
        self._update_estimate()

    def on_select_changed(self) -> None:
        self._update_estimate()

    def on_input_submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        try:
            defaults = self._form()
        except ValueError as exc:
            self.notify(str(exc), title="Load settings", severity="error", markup=False)
            return
        self.dismiss(defaults)

    def action_cancel(self) -> None:
        self.dismiss(None)
