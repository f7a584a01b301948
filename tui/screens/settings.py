"""Settings (F9 or the palette): model folders, default load and sampling parameters, theme and key overrides.

Saving writes the config file (``core.settings.save_config``) and hands the new ``Config`` back; the app applies
at once what can be applied (theme, keymap, folders, sampling of new chats). The load and sampling fields are built
from their declarations (``core.llama.options``) and checked by them, as the settings file and ``tuillm chat``'s
flags are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Select, TextArea

from tuillm.core import paths
from tuillm.core.settings import LOAD_SETTINGS, SAMPLING_SETTINGS, Config, config_attr
from tuillm.tui import key_overrides, keymap
from tuillm.tui.screens.path_dialog import NO_SUCH_FOLDER, folder_problem, named
from tuillm.tui.widgets.safe_input import SafeInput
from tuillm.tui.widgets.safe_text_area import SafeTextArea

SCAN_FIELDS = (("scan_hf_cache", "Scan the Hugging Face cache"), ("scan_ollama", "Scan Ollama's models"),
               ("scan_lmstudio", "Scan LM Studio's models"))
DEFAULT_THEME = "textual-dark"


def binding_ids() -> dict[str, str]:
    """Every binding id of the key map (tui/keymap.py), with its keys as declared (before the user's overrides)
    and what it does, as one line of text."""
    return dict(sorted((b.id, f"{b.key}  ({b.description or b.action})") for b in keymap.bindings() if b.id))


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
    SettingsScreen.-narrow .settings-grid { grid-size: 2; grid-columns: 20 1fr; }
    #settings-dirs { height: 5; }
    #settings-keys { height: 6; }
    """
    BINDINGS = keymap.SETTINGS
    # Below 72 columns one field a row: two a row left 60 columns' fields 2 characters wide ("40" of 4096).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (72, "-wide")]

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
                yield SafeTextArea("\n".join(str(d) for d in c.model_dirs), id="settings-dirs")
                for attr, label in SCAN_FIELDS:
                    yield Checkbox(label, getattr(c, attr), id=f"settings-{attr}", compact=True)
                yield Label("Loading", classes="settings-heading")
                yield from self._load_fields()
                yield Label("Sampling (new chats)", classes="settings-heading")
                with Grid(classes="settings-grid"):
                    for key, option in SAMPLING_SETTINGS.items():
                        yield Label(option.title)
                        yield SafeInput(option.format(getattr(c.sampling, key)), id=f"settings-sampling-{key}",
                                    compact=True)
                yield Label("Theme", classes="settings-heading")
                theme = c.theme if c.theme in self.themes else (DEFAULT_THEME if DEFAULT_THEME in self.themes
                                                                 else self.themes[0])
                yield Select([(t, t) for t in self.themes], allow_blank=False, value=theme, id="settings-theme",
                             compact=True)
                yield Label("Key overrides (binding.id = keys, one per line)", classes="settings-heading")
                yield SafeTextArea("\n".join(f"{k} = {v}" for k, v in c.keys.items()), id="settings-keys")
                yield Label("Binding ids and their default keys:", classes="settings-hint")
                yield Label("\n".join(f"{k} = {v}" for k, v in self.binding_keys.items()), classes="settings-hint",
                            id="settings-binding-ids", markup=False)

    def _load_fields(self) -> ComposeResult:
        c = self.config
        with Grid(classes="settings-grid"):
            for key, option in LOAD_SETTINGS.items():
                value = getattr(c, config_attr(key))
                if option.choices is not None:
                    yield Label(option.title)
                    yield Select([(choice, choice) for choice in option.choices], allow_blank=False, value=value,
                                 id=f"settings-load-{key}", compact=True)
                elif option.kind is not bool:
                    yield Label(option.title)
                    yield SafeInput(option.format(value), id=f"settings-load-{key}", compact=True)
        for key, option in LOAD_SETTINGS.items():
            if option.kind is bool:
                yield Checkbox(option.title, getattr(c, config_attr(key)), id=f"settings-load-{key}", compact=True)

    def on_mount(self) -> None:
        self.query_one("#settings-dirs", TextArea).focus()

    def _load_values(self) -> dict[str, Any]:
        """The [load] fields as Config attributes; a ValueError (OptionError) names the first bad field."""
        values: dict[str, Any] = {}
        for key, option in LOAD_SETTINGS.items():
            field_id = f"#settings-load-{key}"
            if option.choices is not None:
                value: Any = option.check(str(self.query_one(field_id, Select).value))
            elif option.kind is bool:
                value = self.query_one(field_id, Checkbox).value
            else:
                value = option.parse_field(self.query_one(field_id, Input).value)
            values[config_attr(key)] = value
        return values

    def _sampling_values(self) -> dict[str, Any]:
        return {key: option.parse_field(self.query_one(f"#settings-sampling-{key}", Input).value)
                for key, option in SAMPLING_SETTINGS.items()}

    def read_form(self) -> Config:
        """A new ``Config`` from the fields (path, raw file and per-model settings kept); ValueError: a bad field."""
        c = self.config
        values: dict[str, Any] = {"model_dirs": self._model_dirs()}
        for attr, _label in SCAN_FIELDS:
            values[attr] = self.query_one(f"#settings-{attr}", Checkbox).value
        values.update(self._load_values())
        values["sampling"] = replace(c.sampling, **self._sampling_values())
        values["theme"] = str(self.query_one("#settings-theme", Select).value)
        values["keys"], refused = key_overrides.check(parse_keys(self.query_one("#settings-keys", TextArea).text))
        if refused:
            raise ValueError("Key overrides: " + key_overrides.problems({}, refused)[0])
        return replace(c, **values, model_defaults=dict(c.model_defaults), problem=None)

    def _model_dirs(self) -> list[Path]:
        """The model folders, one a line; a ValueError names the first line that is not a folder. A new line is
        taken as the add dialog (Models, a) takes a folder: one that exists, made absolute (relative, it would
        follow the folder tuillm is started in). A line the config had is kept while it is missing: a default
        folder not made yet, or a drive not mounted now, is searched once it is there."""
        dirs: list[Path] = []
        had = set(self.config.model_dirs)  # a set: 10,000 folders, each looked up in the list, took 10 s to save
        for n, line in enumerate(self.query_one("#settings-dirs", TextArea).text.splitlines(), 1):
            if not line.strip():
                continue
            path = paths.expand_user(line.strip())
            known = path in had
            if (problem := folder_problem(path)) and not (known and problem == NO_SUCH_FOLDER):
                raise ValueError(f"Model folders, line {n}: {named(path)}: {problem}")
            dirs.append(path if known else path.absolute())
        return dirs

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
