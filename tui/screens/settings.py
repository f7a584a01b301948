"""Settings (F9 or the palette): model folders, default load and sampling parameters, theme and key overrides.

Saving writes the config file (``core.config.save_config``) and hands the new ``Config`` back; the app applies at
once what can be applied (theme, keymap, folders, sampling of new chats).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Select, TextArea

from tuillm.core import paths
from tuillm.core.llama.options import KV_TYPES
from tuillm.core.settings import AUTO, LOAD_KEYS, SAMPLING_KEYS, Config, check_value

# (config key, label)
LOAD_FIELDS = (("ctx", "Context (tokens)"), ("n_gpu_layers", "GPU layers (auto, -1)"), ("threads", "Threads (auto)"))
SAMPLING_FIELDS = (("temperature", "Temperature"), ("top_p", "Top p"), ("top_k", "Top k"), ("min_p", "Min p"),
                   ("repeat_penalty", "Repeat penalty"), ("max_tokens", "Max tokens"))
SCAN_FIELDS = (("scan_hf_cache", "Scan the Hugging Face cache"), ("scan_ollama", "Scan Ollama's models"),
               ("scan_lmstudio", "Scan LM Studio's models"))
DEFAULT_THEME = "textual-dark"


def binding_ids(app: App) -> dict[str, str]:
    """Every binding id of the app and its mounted widgets, with its keys as declared (before the keymap) and
    what it does, as one line of text."""
    from tuillm.tui.screens.ab import ABScreen
    from tuillm.tui.screens.add_folder import AddFolderScreen
    from tuillm.tui.screens.chat_options import ChatOptionsScreen
    from tuillm.tui.screens.confirm import ConfirmScreen
    from tuillm.tui.screens.help import HelpScreen
    from tuillm.tui.screens.model_details import ModelDetailsScreen
    from tuillm.tui.screens.model_settings import ModelSettingsScreen
    from tuillm.tui.screens.rename import RenameScreen

    nodes: list[Any] = [app, *app.screen_stack]
    for screen in app.screen_stack:
        nodes.extend(screen.query("*"))
    # The dialogs' keys too, though none of them is open now.
    classes: list[type] = [type(node) for node in nodes]
    classes += [SettingsScreen, ModelDetailsScreen, ModelSettingsScreen, AddFolderScreen, ConfirmScreen,
                ChatOptionsScreen, RenameScreen, HelpScreen, ABScreen]
    found: dict[str, str] = {}
    for widget_class in classes:
        for cls in widget_class.__mro__:
            for binding in cls.__dict__.get("BINDINGS", ()):
                binding_id = getattr(binding, "id", None)
                if binding_id and binding_id not in found:
                    found[binding_id] = f"{binding.key}  ({binding.description or binding.action})"
    return dict(sorted(found.items()))


def parse_keys(text: str) -> dict[str, str]:
    """Lines of ``binding.id = keys`` (blank lines and # comments skipped); a ValueError names a bad line."""
    keys: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        binding_id, sep, value = line.partition("=")
        binding_id, value = binding_id.strip().strip('"'), value.strip().strip('"')
        if not sep or not binding_id or not value:
            raise ValueError(f"Key overrides, line {n}: write it as binding.id = keys (e.g. models.refresh = f6)")
        keys[binding_id] = value
    return keys


def _number(text: str, label: str) -> int | float | str:
    text = text.strip()
    if text.lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{label}: {text!r} is not a number") from None


class SettingsScreen(ModalScreen[Config | None]):
    """Ctrl+S saves, Esc cancels; Tab moves between the fields."""

    HELP_TITLE = "Settings"
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    #settings-box {
        width: 95%;
        max-width: 90;
        height: 95%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    #settings-title { text-style: bold; }
    #settings-scroll { height: 1fr; }
    .settings-heading { text-style: bold; color: $accent; padding-top: 1; }
    .settings-hint { color: $text-muted; }
    .settings-grid { grid-size: 4; grid-columns: 22 1fr 22 1fr; grid-gutter: 0 1; height: auto; }
    #settings-dirs { height: 5; }
    #settings-keys { height: 6; }
    """
    BINDINGS: list[BindingType] = [
        Binding("ctrl+s", "save", "Save", id="settings.save", tooltip="Save the settings and apply them"),
        Binding("escape", "cancel", "Cancel", id="settings.cancel", tooltip="Close without saving"),
    ]

    def __init__(self, config: Config, themes: list[str], binding_keys: dict[str, str]) -> None:
        super().__init__()
        self.config = config
        self.themes = themes
        self.binding_keys = binding_keys

    def compose(self) -> ComposeResult:
        c = self.config
        with Vertical(id="settings-box"):
            yield Label("Settings  (Ctrl+S saves, Esc cancels, Tab next field)", id="settings-title")
            yield Label(f"File: {c.path or paths.config_file()}", classes="settings-hint", markup=False)
            with VerticalScroll(id="settings-scroll"):
                yield Label("Model folders (one per line)", classes="settings-heading")
                yield TextArea("\n".join(str(d) for d in c.model_dirs), id="settings-dirs")
                for attr, label in SCAN_FIELDS:
                    yield Checkbox(label, getattr(c, attr), id=f"settings-{attr}", compact=True)
                yield Label("Loading", classes="settings-heading")
                with Grid(classes="settings-grid"):
                    for key, label in LOAD_FIELDS:
                        value = getattr(c, LOAD_KEYS[key][0])
                        yield Label(label)
                        yield Input(AUTO if value is None else str(value), id=f"settings-load-{key}", compact=True)
                    yield Label("KV cache type")
                    yield Select([(kv, kv) for kv in KV_TYPES], allow_blank=False, value=c.kv_type,
                                 id="settings-load-kv_type", compact=True)
                yield Checkbox("Flash attention", c.flash_attn, id="settings-load-flash_attn", compact=True)
                yield Label("Sampling (new chats)", classes="settings-heading")
                with Grid(classes="settings-grid"):
                    for key, label in SAMPLING_FIELDS:
                        yield Label(label)
                        yield Input(str(getattr(c.sampling, key)), id=f"settings-sampling-{key}", compact=True)
                yield Label("Theme", classes="settings-heading")
                theme = c.theme if c.theme in self.themes else (DEFAULT_THEME if DEFAULT_THEME in self.themes
                                                                 else self.themes[0])
                yield Select([(t, t) for t in self.themes], allow_blank=False, value=theme, id="settings-theme",
                             compact=True)
                yield Label("Key overrides (binding.id = keys, one per line)", classes="settings-heading")
                yield TextArea("\n".join(f"{k} = {v}" for k, v in c.keys.items()), id="settings-keys")
                yield Label("Binding ids and their default keys:", classes="settings-hint")
                yield Label("\n".join(f"{k} = {v}" for k, v in self.binding_keys.items()), classes="settings-hint",
                            id="settings-binding-ids", markup=False)

    def on_mount(self) -> None:
        self.query_one("#settings-dirs", TextArea).focus()

    def read_form(self) -> Config:
        """A new ``Config`` from the fields (path, raw file and per-model settings kept); ValueError: a bad field."""
        c = self.config
        dirs = [Path(line.strip()).expanduser() for line in self.query_one("#settings-dirs", TextArea).text
                .splitlines() if line.strip()]
        values: dict[str, Any] = {"model_dirs": dirs}
        for attr, _label in SCAN_FIELDS:
            values[attr] = self.query_one(f"#settings-{attr}", Checkbox).value
        for key, label in LOAD_FIELDS:
            raw = _number(self.query_one(f"#settings-load-{key}", Input).value, label)
            try:
                values[LOAD_KEYS[key][0]] = check_value("load", key, raw)
            except ValueError as exc:
                raise ValueError(f"{label}: must be {exc}") from None
        values["kv_type"] = str(self.query_one("#settings-load-kv_type", Select).value)
        values["flash_attn"] = self.query_one("#settings-load-flash_attn", Checkbox).value
        sampling: dict[str, Any] = {}
        for key, label in SAMPLING_FIELDS:
            raw = _number(self.query_one(f"#settings-sampling-{key}", Input).value, label)
            try:
                sampling[key] = SAMPLING_KEYS[key](raw)
            except ValueError as exc:
                raise ValueError(f"{label}: must be {exc}") from None
        values["sampling"] = replace(c.sampling, **sampling)
        values["theme"] = str(self.query_one("#settings-theme", Select).value)
        values["keys"] = parse_keys(self.query_one("#settings-keys", TextArea).text)
        return replace(c, **values, model_defaults=dict(c.model_defaults), problem=None)

    def action_save(self) -> None:
        try:
            config = self.read_form()
        except ValueError as exc:
            self.notify(str(exc), title="Settings", severity="error", markup=False)
            return
        unknown = [binding_id for binding_id in config.keys if binding_id not in self.binding_keys]
        if unknown:
            # Kept (a pane of a later version may know it), but most likely a typo.
            self.notify(f"no binding has the id {', '.join(unknown)}: that override does nothing",
                        title="Settings", severity="warning", markup=False)
        self.dismiss(config)

    def action_cancel(self) -> None:
        self.dismiss(None)
