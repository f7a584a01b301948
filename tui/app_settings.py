"""The app's settings: F9's dialog, the config's theme and key overrides applied, a theme picked anywhere kept.

A mixin for the App (``class TuillmApp(SettingsControl, ServeControl)``), as ``serve_control`` is: the settings
change the app's theme, keys and tab labels, and reach the panes that read them (the chat's sampling defaults, the
Models pane's folders and fit column).
"""

from __future__ import annotations

from textual.app import App
from textual.theme import Theme
from textual.widget import AwaitMount
from textual.widgets import TabbedContent

from tuillm.core.options import MAX_ECHO
from tuillm.core.settings import Config
from tuillm.core.text import shown
from tuillm.tui import key_overrides, keymap
from tuillm.tui.panes.base import PANES
from tuillm.tui.panes.chat import ChatPane
from tuillm.tui.session import Session


class SettingsControl(App[int]):
    """The app's part of the settings."""

    session: Session  # the app's: its config is what the dialog edits
    _startup_theme: str  # the theme after the config's was applied (on_mount)
    _pane_mounts: dict[str, AwaitMount]  # the app's: the panes mounted after the first frame

    def _apply_ui_settings(self) -> None:
        """The config's theme and key overrides (an unknown theme is reported; Textual's stays). A refused override
        is reported too and dropped from the config (as a bad value of the file is): its binding keeps its keys,
        and the tabs, F1 and the hints, which read the config's, say so."""
        config = self.session.config
        if config.theme:
            if config.theme in self.available_themes:
                self.theme = config.theme
            else:
                self.notify(f"ui.theme = {shown(repr(config.theme), MAX_ECHO)}: no such theme; using {self.theme}",
                            title="Config", severity="warning", timeout=10, markup=False)
        applied, refused = key_overrides.check(config.keys)
        if problems := key_overrides.problems(applied, refused):
            self.notify("; ".join(problems), title="Config", severity="warning", timeout=10, markup=False)
        config.keys = applied
        self.set_keymap(applied)
        self._label_tabs()

    def _label_tabs(self) -> None:
        # Each tab names its key ("Chat F2"), as the user's overrides have it: the tabs are the panes' menu.
        tabs = self.query_one(TabbedContent)
        for spec in PANES:
            key = keymap.first_key(f"app.show_{spec.id}", self.session.config.keys)
            tabs.get_tab(spec.id).label = f"{spec.title} {keymap.key_label(key)}"

    def action_settings(self) -> None:
        from tuillm.tui.screens.settings import SettingsScreen, binding_ids

        if isinstance(self.screen, SettingsScreen):
            return
        self.push_screen(SettingsScreen(self.session.config, sorted(self.available_themes), binding_ids()),
                         self._settings_saved)

    def _settings_saved(self, new: Config | None) -> None:
        from dataclasses import fields

        if new is None:
            return
        config = self.session.config
        # The panes hold this Config: change it in place so they see the new values at once.
        for f in fields(config):
            setattr(config, f.name, getattr(new, f.name))
        self._save_settings("Settings")
        self._apply_ui_settings()
        self.query_one(ChatPane).draft_sampling = config.sampling  # new chats start with the new defaults
        # New folders or load defaults (the fit column); a Models pane not mounted yet reads them as it mounts.
        if self._pane_mounts.get("models") is not None:
            from tuillm.tui.panes.models import ModelsPane

            for models in self.query(ModelsPane):
                models.action_refresh()

    def _save_settings(self, title: str) -> None:
        """Writes the session's config to its file; the user reads where (or why not: then it is for this run)."""
        from tuillm.core.settings import backup_path

        config = self.session.config
        unreadable_file = config.problem is not None and not config.raw
        try:
            file, problem = self.session.save_config()
        except OSError as exc:
            self.notify(f"could not write {config.path}: {exc.strerror or exc}; the settings apply to this run only",
                        title=title, severity="error", markup=False)
        else:
            kept = backup_path(file)
            note = f" (the unreadable old file is kept as {kept.name})" if unreadable_file and kept.is_file() else ""
            self.notify(f"saved to {file}{note}", title=title, markup=False)
            if problem:
                self.notify(problem, title="Config", severity="warning", timeout=10, markup=False)

    def _theme_changed(self, theme: Theme) -> None:
        """A theme picked anywhere (the palette's "Theme" too) is kept as F9's choice is; the theme the app
        started with, or one the config already names, is not news."""
        config = self.session.config
        if theme.name != (config.theme or self._startup_theme):
            config.theme = theme.name
            self._save_settings("Theme")
