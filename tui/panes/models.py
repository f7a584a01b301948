"""The Models pane: the discovered models with their memory fit, a filter, details, per-model load settings, and
the file actions (add a folder, delete, send to Convert).

Discovery reads file headers (and may walk large folders), so it runs as a job in a thread worker
(``tui.jobs.run_job``) and reports back with typed messages; the event loop only fills the table. Each row's
verdict is the one fit verdict (``core.models.fit``) that ``tuillm models`` prints too: the load the chat would
do, with the model's own settings, against the available RAM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from textual import events
from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Input, Label, Static

from tuillm.core.events import Emit
from tuillm.core.models.catalog import CatalogEntry, CatalogResult, discover
from tuillm.core.models.fit import Fit, advice, load_fit
from tuillm.core.models.hardware import Hardware
from tuillm.core.paths import expand_user
from tuillm.core.settings import Config
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui import keymap
from tuillm.tui.jobs import JobFailed, run_job
from tuillm.tui.panes.models_actions import ModelActions
from tuillm.tui.panes.models_table import OWN_MARK, ModelsTable, Row, format_context, matches, row_cells
from tuillm.tui.session import Session
from tuillm.tui.widgets.safe_input import SafeInput

# The hint line's words, by binding: the keys come from the key map, as the user renamed them.
HINT_WORDS = (("models.filter", "filter"), ("models.details", "info"), ("models.settings", "settings"),
              ("models.add_folder", "add"), ("models.delete", "delete"), ("models.convert", "convert"),
              ("models.download", "pull"))


def key_hint(overrides: dict[str, str], narrow: bool = False) -> str:
    """"Enter chat  / filter  i info …": what the table's keys do, in one line of 80 columns (``narrow``: of 60,
    the letters only, closer together; Enter on a row is what a table does)."""
    keys = [f"{keymap.key_label(keymap.first_key(binding, overrides))} {word}" for binding, word in HINT_WORDS]
    return " ".join(keys) if narrow else "  ".join(["Enter chat", *keys])


FILTER_HINT = "Type to filter · Enter or ↓ back to the table · Esc clears"
CATALOG_JOB = "catalog"
NARROW = 72  # columns: below this the pane's lines take their short forms
PROBLEMS_TITLE = "Tab here, ↑/↓ scroll"  # on the Could-not-read box when it holds more than it shows


def hardware_text(hw: Hardware, available: int, narrow: bool = False) -> str:
    # The best of the CPU's fast-kernel features says most about llama.cpp's CPU speed; one word fits 80 columns.
    best = next((f for f in ("amx_tile", "avx512f", "avx2", "avx", "i8mm", "dotprod", "neon") if f in hw.cpu_features),
                None)
    cpu = f"{hw.physical_cores} cores" + (f" {best}" if best else "")
    offload = f"GPU offload: {hw.gpu_backend}" if hw.gpu_offload else "CPU only (no GPU offload)"
    if narrow:  # 60 columns: the same figures, fewer words
        offload = f"GPU: {hw.gpu_backend}" if hw.gpu_offload else "CPU only"
        return f"RAM {format_bytes(available)} free/{format_bytes(hw.total_ram)} · {cpu} · {offload}"
    return f"RAM {format_bytes(available)} free of {format_bytes(hw.total_ram)} · {cpu} · {offload}"


@dataclass(frozen=True)
class Discovered:
    """What a discovery job found, and the machine it judged the fit on."""

    result: CatalogResult
    hardware: Hardware


def discovery_job(dirs: list[Path], config: Config, hardware: Hardware | None,
                  available: int | None) -> Discovered:
    """The catalog of ``dirs`` with each model's fit; ``hardware`` None: detected here (it asks llama.cpp about GPU
    offload, so not on the event loop); ``available`` None: the detected free RAM."""
    if hardware is None:
        from tuillm.core.models.hardware import detect

        hardware = detect()
    ram = hardware.available_ram if available is None else available
    return Discovered(discover(dirs, config=config, available=ram, offload=hardware.gpu_offload), hardware)


class ModelsPane(ModelActions, Vertical):
    HELP_TITLE = "Models pane"
    BINDINGS = keymap.MODELS

    DEFAULT_CSS = """
    #models-top { height: 1; }
    #models-filter { width: 24; }
    #models-summary { width: 1fr; height: 1; padding: 0 1; color: $text-muted; text-align: right; }
    #models-hardware, #models-advice, #models-hint { height: 1; padding: 0 1; color: $text-muted; }
    #models-advice { color: $text; }
    ModelsPane.-narrow #models-filter { width: 14; }
    #models-problems-box { height: auto; max-height: 6; padding: 0 1; border-top: solid $warning 50%; }
    #models-problems-box:focus { border-top: solid $warning; background: $boost; }
    ModelsPane.-short #models-problems-box { max-height: 4; }
    #models-problems { height: auto; color: $warning; }
    """

    class CatalogLoaded(Message):
        def __init__(self, generation: int, found: Discovered) -> None:
            super().__init__()
            self.generation = generation  # the refresh it answers: an older one's late answer is dropped
            self.found = found

    class ModelChosen(Message):
        """Enter on a row: the app opens the Chat pane with this model."""

        def __init__(self, name: str, path: Path) -> None:
            super().__init__()
            self.name = name
            self.path = path

    class ConvertRequested(Message):
        """"Send to Convert": the app shows the Convert pane with this HF folder or GGUF file as its source."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.result: CatalogResult | None = None
        self.hardware: Hardware | None = session.hardware
        self.loading_catalog = False
        self.filter_text = ""
        # Folders scanned this run beyond the configured ones (include_paths, and added folders when the
        # app was started with fixed folders).
        self.extra_dirs: list[Path] = []
        self._select_after: Path | None = None  # the row to put the cursor on after the next refresh
        self._problems_told: set[tuple[str, str]] = set()  # the unreadable files the user was told of
        self._generation = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="models-top"):
            yield SafeInput(placeholder="/ filter", id="models-filter", compact=True)
            yield Label("Discovering models…", id="models-summary")
        yield ModelsTable(id="models-table")
        yield Label("", id="models-hardware", markup=False)
        yield Label("", id="models-advice", markup=False)
        yield Label(key_hint(self.session.config.keys), id="models-hint", markup=False)
        # A long list scrolls: the box takes the focus (Tab from the table) and the arrow keys.
        with VerticalScroll(id="models-problems-box"):
            yield Static(id="models-problems", markup=False)

    def on_mount(self) -> None:
        self.query_one("#models-problems-box").display = False
        self._fill_table()
        self.action_refresh()

    def focus_default(self) -> None:
        # At once, not with Widget.focus()'s call_later: keys typed in the same burst ("/abc", Enter then "i")
        # must reach the widget that the key before them chose.
        self.screen.set_focus(self.query_one(ModelsTable))

    def work_in_progress(self) -> list[str]:
        return []  # a download (its own dialog) stopped by quitting keeps its part: the next pull resumes it

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Refresh models", "Scan the model folders again", self.action_refresh)
        yield SystemCommand("Filter models", "Type to filter the models", self.action_filter)
        yield from self.action_commands()

    # --- discovery --------------------------------------------------------------------------------------------------
    @property
    def model_dirs(self) -> list[Path]:
        base = self.session.model_dirs if self.session.model_dirs is not None else self.session.config.model_dirs
        dirs: list[Path] = []
        for d in [*base, *self.extra_dirs]:
            if d not in dirs:
                dirs.append(d)
        return dirs

    @property
    def available(self) -> int | None:
        """The RAM the fit is judged against: the app's fixed figure, else what discovery measured."""
        if self.session.available_ram is not None:
            return self.session.available_ram
        return self.hardware.available_ram if self.hardware else None

    def action_refresh(self) -> None:
        self.loading_catalog = True
        self.query_one("#models-summary", Label).update("Discovering models…")
        self._generation += 1
        generation, dirs, session = self._generation, self.model_dirs, self.session

        def job(_emit: Emit) -> Discovered:
            return discovery_job(dirs, session.config, session.hardware, session.available_ram)

        run_job(self, CATALOG_JOB, job, lambda found: self.CatalogLoaded(generation, found))

    def include_paths(self, paths: list[Path]) -> None:
        """Make sure these files (or HF folders) are listed: their folder is scanned too for this run if it is not
        one of the model folders; then refresh, with the cursor on the first of them."""
        scanned = self.model_dirs
        for path in paths:
            path = expand_user(path).absolute()
            folder = path.parent
            if not any(folder == d or folder.is_relative_to(d) for d in scanned) and folder not in self.extra_dirs:
                self.extra_dirs.append(folder)
                scanned.append(folder)
        if paths:
            self._select_after = expand_user(paths[0]).absolute()
        self.action_refresh()

    def select_after(self, path: Path) -> None:
        """The row to put the cursor on after the next refresh (a model just downloaded)."""
        self._select_after = path

    def on_models_pane_catalog_loaded(self, event: CatalogLoaded) -> None:
        event.stop()
        if event.generation != self._generation:
            return
        self.loading_catalog = False
        self.result = event.found.result
        self.hardware = event.found.hardware
        self._fill_table()
        self._show_summary()
        self._show_problems()

    def on_job_failed(self, event: JobFailed) -> None:
        # Discovery reports bad files itself; anything else is a bug, shown, not fatal.
        if event.name != CATALOG_JOB:
            return
        event.stop()
        self.loading_catalog = False
        self.query_one("#models-summary", Label).update("Model discovery failed")
        self.notify(event.error, title="Model discovery failed", severity="error", markup=False)

    def _show_problems(self) -> None:
        problems = self.result.problems if self.result else []
        box = self.query_one("#models-problems", Static)
        scroll = self.query_one("#models-problems-box", VerticalScroll)
        scroll.display = bool(problems)
        scroll.call_after_refresh(self._title_problems)
        # File name and problem first: the folder part is what gets cut off at 80 columns. Names are from the disk:
        # one safe line each (an escape sequence never reaches the terminal, a newline never splits an entry).
        box.update("Could not read:\n" + "\n".join(
            safe_line(f"{Path(p.path).name}: {p.problem} (in {Path(p.path).parent})") for p in problems))
        # Told once per file and problem: a refresh (one after each file a conversion writes) finds them again.
        told, self._problems_told = self._problems_told, {(p.path, p.problem) for p in problems}
        if self._problems_told - told:
            self.notify(f"{len(problems)} model file{'s' if len(problems) != 1 else ''} could not be read "
                        "(listed below the table)", title="Models", severity="warning")

    def _title_problems(self) -> None:
        # Said only where there is more to see than the box shows (a few short entries need no key).
        scroll = self.query_one("#models-problems-box", VerticalScroll)
        scroll.border_title = PROBLEMS_TITLE if scroll.max_scroll_y > 0 else None

    def _show_summary(self) -> None:
        if self.result is None:
            return
        visible = self.visible_entries()
        n, shown = len(self.result.entries), len(visible)
        summary = f"{shown} of {n} models" if self.filter_text.strip() else f"{n} model{'s' if n != 1 else ''}"
        if self.result.problems:
            summary += f" · {len(self.result.problems)} unreadable"
        # Each row is estimated at its load context: the configured one unless the model has its own.
        at = "" if self._narrow else "est. at "  # 60 columns: "· 4K ctx"
        summary += f" · {at}{format_context(self.session.config.default_ctx)} ctx"
        if any(self._has_own_settings(e) for e in visible):
            summary += f" ({OWN_MARK} own)"
        self.query_one("#models-summary", Label).update(summary)
        if self.hardware is not None:
            self.query_one("#models-hardware", Label).update(
                hardware_text(self.hardware, self.available or self.hardware.available_ram, self._narrow))

    # --- rows -------------------------------------------------------------------------------------------------------
    def visible_entries(self) -> list[CatalogEntry]:
        entries = self.result.entries if self.result else []
        return [e for e in entries if matches(e, self.filter_text)]

    def fit_of(self, entry: CatalogEntry) -> Fit:
        """The one fit verdict (core.models.fit) at the settings as they are now (they change after discovery)."""
        offload = self.hardware.gpu_offload if self.hardware else None
        return load_fit(entry.info, self.session.config, available=self.available, offload=offload)

    def _has_own_settings(self, entry: CatalogEntry) -> bool:
        return not self.session.config.defaults_for(entry.info.path).is_empty()

    def selected_entry(self) -> CatalogEntry | None:
        return self._entry_at(self.query_one(ModelsTable).highlighted_key())

    def _entry_at(self, row_key: str | None) -> CatalogEntry | None:
        return next((e for e in self.visible_entries() if str(e.info.path) == row_key), None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        entry = self._entry_at(event.row_key.value)
        if entry is None:
            return
        if entry.info.format != "gguf":
            self.tell(f"{entry.name} is an HF checkpoint: convert it to GGUF first (c sends it to Convert)", "Models",
                      "warning")
            return
        self.post_message(self.ModelChosen(entry.name, entry.info.path))

    def action_chat(self) -> None:
        """Ctrl+T: chat with the highlighted model, as Enter on its row (also from the filter)."""
        self.query_one("#models-table", DataTable).action_select_cursor()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_advice()

    def _show_advice(self) -> None:
        entry = self.selected_entry()
        label = self.query_one("#models-advice", Label)
        if entry is None:
            label.update("No model matches the filter" if self.result and self.result.entries else "")
            return
        label.update(safe_line(f"{entry.name}: {advice(entry.info, self.fit_of(entry))}"))

    @property
    def _narrow(self) -> bool:
        return self.size.width < NARROW

    def on_resize(self) -> None:
        self.set_class(self._narrow, "-narrow")
        self.set_class(self.size.height < 18, "-short")  # 60x20 (a pane of 15 rows): the table keeps its rows
        self._show_hint()
        if self.result is not None:
            self._fill_table()
            self._show_summary()
            self.call_after_refresh(self._title_problems)

    def _fill_table(self) -> None:
        rows = [Row(e.info.path, row_cells(e, self.fit_of(e).estimate, self._has_own_settings(e)))
                for e in self.visible_entries()]
        if self.query_one(ModelsTable).show(rows, self.size.width, self._select_after):
            self._select_after = None
        self._show_advice()

    def refresh_rows(self) -> None:
        """After a change of settings: the rows' verdicts and the summary again, without a new discovery."""
        self._fill_table()
        self._show_summary()

    # --- filter -----------------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.screen.set_focus(self.query_one("#models-filter", Input))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self._show_hint(event.widget)

    def _show_hint(self, focused: Widget | None = None) -> None:
        # The hint line says how to leave the filter while it has the keys.
        widget = focused or self.app.focused
        in_filter = widget is not None and widget.id == "models-filter"
        hint = FILTER_HINT if in_filter else key_hint(self.session.config.keys, self._narrow)
        self.query_one("#models-hint", Label).update(hint)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "models-filter":
            return
        event.stop()
        self.filter_text = event.value
        if self.result is not None:
            self.refresh_rows()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "models-filter":
            event.stop()
            self.focus_default()

    def on_key(self, event: events.Key) -> None:
        # In the filter: Down or Esc goes back to the table (Esc clears the filter first if there is one).
        focused = self.app.focused
        if not isinstance(focused, Input) or focused.id != "models-filter":
            return
        if event.key == "down":
            event.stop()
            self.focus_default()
        elif event.key == "escape":
            event.stop()
            if focused.value:
                focused.value = ""
            else:
                self.focus_default()

    def action_convert(self) -> None:
        entry = self._need_entry()
        if entry is not None:
            self.post_message(self.ConvertRequested(entry.info.path))
