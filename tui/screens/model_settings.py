"""One model's own load settings (context, GPU layers, threads, KV type, flash attention)."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from tuillm.core.llama.options import KV_TYPES
from tuillm.core.models.memory import estimate_for_load, fit_advice
from tuillm.core.models.metadata import ModelInfo, format_bytes
from tuillm.core.settings import AUTO, Config, ModelDefaults, check_value, load_options_for
from tuillm.tui.screens.dialog_css import DIALOG_CSS

DEFAULT = "default"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _whole_or_auto(text: str, what: str) -> int | str:
    if text.lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a whole number") from None


def parse_model_defaults(ctx: str, n_gpu_layers: str, threads: str, kv_type: str, flash_attn: str,
                         ) -> ModelDefaults:
    """The form's fields as ``ModelDefaults`` (an empty field or "default": the [load] value applies); a
    ValueError names the first bad field."""
    values: dict[str, Any] = {}
    for key, label, text in (("ctx", "Context", ctx), ("n_gpu_layers", "GPU layers", n_gpu_layers),
                             ("threads", "Threads", threads)):
        text = text.strip()
        if not text:
            continue
        try:
            values[key] = check_value("load", key, _whole_or_auto(text, label))
        except ValueError as exc:
            raise ValueError(str(exc) if str(exc).startswith(label) else f"{label}: must be {exc}") from None
    if kv_type != DEFAULT:
        values["kv_type"] = check_value("load", "kv_type", kv_type)
    if flash_attn != DEFAULT:
        values["flash_attn"] = flash_attn == "on"
    # "auto" for GPU layers / threads is the [load] behaviour's own value: kept only as "not set".
    return ModelDefaults(**{k: v for k, v in values.items() if v is not None})


class ModelSettingsScreen(ModalScreen[ModelDefaults | None]):
    """A model's own context, GPU layers, threads, KV cache type and flash attention; empty fields use [load]."""

    HELP_TITLE = "Model load settings"
    DEFAULT_CSS = DIALOG_CSS + """
    ModelSettingsScreen { align: center middle; }
    #model-settings-grid {
        grid-size: 2;
        grid-columns: 22 1fr;
        grid-gutter: 0 1;
        height: auto;
    }
    #model-settings-estimate { padding-top: 1; height: auto; }
    """
    BINDINGS: list[BindingType] = [
        Binding("ctrl+s", "save", "Save", id="models.settings_save", tooltip="Keep these settings for this model"),
        Binding("escape", "cancel", "Cancel", id="models.settings_cancel", tooltip="Close without saving"),
    ]

    def __init__(self, config: Config, info: ModelInfo, available: int | None, offload: bool | None = None) -> None:
        super().__init__()
        self.config = config
        self.info = info
        self.available = available
        self.offload = offload  # whether llama.cpp offloads to a GPU (None: ask it)
        self.current = config.defaults_for(info.path)

    def compose(self) -> ComposeResult:
        c, cur = self.config, self.current
        kv_default = f"{DEFAULT} ({c.kv_type})"
        flash_default = f"{DEFAULT} ({'on' if c.flash_attn else 'off'})"
        with Vertical(classes="models-dialog"):
            yield Label(f"Load settings: {self.info.path.name}", classes="dialog-title", markup=False)
            yield Label("Empty: the default from Settings. Ctrl+S or Enter saves, Esc cancels.",
                        classes="dialog-hint")
            with Grid(id="model-settings-grid"):
                yield Label("Context (tokens)")
                yield Input(_text(cur.ctx), placeholder=f"{c.default_ctx}", id="ms-ctx", compact=True)
                yield Label("GPU layers (-1: all)")
                yield Input(_text(cur.n_gpu_layers), placeholder=_text(c.n_gpu_layers or AUTO), id="ms-ngl",
                            compact=True)
                yield Label("Threads")
                yield Input(_text(cur.threads), placeholder=_text(c.threads or AUTO), id="ms-threads",
                            compact=True)
                yield Label("KV cache type")
                yield Select([(kv_default, DEFAULT), *((kv, kv) for kv in KV_TYPES)], allow_blank=False,
                             value=cur.kv_type or DEFAULT, id="ms-kv", compact=True)
                yield Label("Flash attention")
                flash = DEFAULT if cur.flash_attn is None else ("on" if cur.flash_attn else "off")
                yield Select([(flash_default, DEFAULT), ("on", "on"), ("off", "off")], allow_blank=False,
                             value=flash, id="ms-flash", compact=True)
            yield Label("", id="model-settings-estimate", markup=False)

    def on_mount(self) -> None:
        self.query_one("#ms-ctx", Input).focus()
        self._update_estimate()
        self._recommend_gpu_layers()

    @work(thread=True, exit_on_error=False)
    def _recommend_gpu_layers(self) -> None:
        # Asks nvidia-smi for free VRAM where there is one: not on the event loop.
        from tuillm.core.models.memory import default_gpu_layers

        n = default_gpu_layers(self.info, load_options_for(self.config, self.info.path).n_ctx)
        text = "0 (CPU build)" if n == 0 else ("all (-1)" if n < 0 else str(n))
        self.app.call_from_thread(self._show_recommendation, text)

    def _show_recommendation(self, text: str) -> None:
        field = self.query_one("#ms-ngl", Input)
        field.placeholder = f"{field.placeholder} · recommended {text}"

    def _form(self) -> ModelDefaults:
        def value(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        return parse_model_defaults(value("ms-ctx"), value("ms-ngl"), value("ms-threads"),
                                    str(self.query_one("#ms-kv", Select).value),
                                    str(self.query_one("#ms-flash", Select).value))

    def _update_estimate(self) -> None:
        label = self.query_one("#model-settings-estimate", Label)
        try:
            mine = self._form()
        except ValueError as exc:
            label.update(str(exc))
            return
        trial = Config(**{**vars(self.config), "model_defaults": {}})
        trial.set_defaults_for(self.info.path, mine)
        options = load_options_for(trial, self.info.path)
        est = estimate_for_load(self.info, options, self.available, offload=self.offload)
        label.update(f"At {options.n_ctx:,} tokens: about {format_bytes(est.total_bytes)} of "
                     f"{format_bytes(est.available_bytes)} available: {est.fit}\n"
                     f"{fit_advice(self.info, options, self.available)}")

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
