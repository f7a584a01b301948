"""Download a model from the Hugging Face Hub: search, a repository's quants with their fit, progress, stop, resume.

Keyboard only: type and Enter searches; Enter on a repository lists its quants (the cursor on the one ``tuillm
pull`` would choose); Enter on a quant downloads it (one that does not fit asks first); Esc stops a download (the
partial file stays, so choosing the quant again resumes it) or closes. The Hub work runs in workers (tui.jobs);
the dialog returns the finished download, or None.
"""

from __future__ import annotations

import threading

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, ProgressBar

from tuillm.core.events import Emit, Log, Progress
from tuillm.core.models.hub.api import SearchHit
from tuillm.core.models.hub.files import RepoListing
from tuillm.core.models.hub.fit import QuantFit
from tuillm.core.models.hub.pull import PullResult
from tuillm.core.models.memory import FITS, TIGHT
from tuillm.core.settings import Config
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui import keymap
from tuillm.tui.jobs import JobCancelled, JobFailed, JobProgress, run_job
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.safe_input import SafeInput

MARKS = {FITS: "✓", TIGHT: "~"}  # anything else: does not fit


class Searched(Message):
    def __init__(self, hits: list[SearchHit]) -> None:
        super().__init__()
        self.hits = hits


class Listed(Message):
    def __init__(self, listing: RepoListing, fits: list[QuantFit]) -> None:
        super().__init__()
        self.listing = listing
        self.fits = fits


class Pulled(Message):
    def __init__(self, result: PullResult) -> None:
        super().__init__()
        self.result = result


class DownloadScreen(ModalScreen[PullResult | None]):
    HELP_TITLE = "Download a model"
    DEFAULT_CSS = DIALOG_CSS + """
    DownloadScreen { align: center middle; }
    DownloadScreen DataTable { height: auto; max-height: 7; }
    DownloadScreen #download-status { height: auto; width: 100%; }
    """
    BINDINGS = keymap.DOWNLOAD

    def __init__(self, config: Config, available: int | None) -> None:
        super().__init__()
        self.config = config
        self.available = available
        self.hits: list[SearchHit] = []
        self.listing: RepoListing | None = None
        self.fits: list[QuantFit] = []
        self.cancel: threading.Event | None = None  # set while a download runs

    def compose(self) -> ComposeResult:
        with Vertical(classes="models-dialog"):
            yield Label("Download from the Hugging Face Hub  (Enter opens, Esc stops/closes)",
                        classes="dialog-title")
            yield SafeInput(placeholder="search GGUF models, e.g. qwen 7b", id="download-search")
            yield DataTable(id="download-repos", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="download-files", cursor_type="row", zebra_stripes=True)
            yield ProgressBar(id="download-progress", show_eta=False)
            # Not markup: it names the Hub's files ("sub/[/b]-Q4_K_M.gguf" raised MarkupError)
            yield Label("", id="download-status", classes="dialog-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#download-repos", DataTable).add_columns("REPOSITORY", "DOWNLOADS", "UPDATED", "QUANTS")
        self.query_one("#download-files", DataTable).add_columns(" ", "QUANT", "SIZE", "MEMORY", "FIT", "HERE")
        for widget in ("#download-repos", "#download-files", "#download-progress"):
            self.query_one(widget).display = False
        self.query_one("#download-search", Input).focus()

    def on_unmount(self) -> None:
        # Leaving with a download running (the app quitting): its thread stops at the next chunk, the part kept.
        if self.cancel is not None:
            self.cancel.set()

    def status(self, text: str) -> None:
        self.query_one("#download-status", Label).update(safe_line(text))

    @property
    def busy(self) -> bool:
        return self.cancel is not None

    # --- search --------------------------------------------------------------------------------------------------
    @on(Input.Submitted, "#download-search")
    def search(self, event: Input.Submitted) -> None:
        from tuillm.core.models.hub.api import search

        event.stop()
        text = event.value.strip()
        if not text or self.busy:
            return
        self.status(f"searching the Hub for {text!r}…")
        run_job(self, "search", lambda _emit: search(text), Searched)

    def on_searched(self, event: Searched) -> None:
        event.stop()
        self.hits = event.hits
        table = self.query_one("#download-repos", DataTable)
        table.clear()
        for h in event.hits:
            table.add_row(*(safe_line(c) for c in (h.repo + (" (gated)" if h.gated else ""), str(h.downloads),
                                                     h.last_modified, ",".join(h.quants))))
        table.display = bool(event.hits)
        self.status(f"{len(event.hits)} repositories; Enter lists one's quants" if event.hits
                    else "no GGUF repositories match")
        if event.hits:
            table.focus()

    # --- a repository's quants --------------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#download-repos")
    def open_repo(self, event: DataTable.RowSelected) -> None:
        from tuillm.core.models.hub.api import listing
        from tuillm.core.models.hub.pull import survey

        event.stop()
        if self.busy or not 0 <= event.cursor_row < len(self.hits):
            return
        repo, config, available = self.hits[event.cursor_row].repo, self.config, self.available

        def job(_emit: Emit) -> tuple[RepoListing, list[QuantFit]]:
            found = listing(repo)
            return found, survey(found, config, available=available)

        self.status(f"reading {repo}: its quants and what fits…")
        run_job(self, "list", job, lambda r: Listed(*r))

    def on_listed(self, event: Listed) -> None:
        from tuillm.core.models.hub.pull import pick

        event.stop()
        self.listing, self.fits = event.listing, event.fits
        table = self.query_one("#download-files", DataTable)
        table.clear()
        best, why = pick(event.fits)
        for q in event.fits:
            # Text, not str: a label may be a file's stem from the Hub, and a str cell is read as markup
            table.add_row("*" if q is best else "", Text(q.quant.quant), format_bytes(q.quant.size),
                          format_bytes(q.fit.estimate.total_bytes),
                          f"{MARKS.get(q.fit.verdict, '✗')} {q.fit.verdict}", self.here(event.listing, q))
        table.display = bool(event.fits)
        if not event.fits:
            self.status(f"{event.listing.repo} holds no GGUF model")
            return
        if best is not None:
            table.move_cursor(row=event.fits.index(best))
        extra = f"; {len(event.listing.mmproj)} mmproj file(s) not used" if event.listing.mmproj else ""
        self.status((f"* {why}" if best else "no quant fits here; Enter asks before downloading one") + extra)
        table.focus()

    @staticmethod
    def here(listing: RepoListing, q: QuantFit) -> str:
        """What of the quant is on disk: "✓" downloaded, a percentage kept from a stopped download, or nothing."""
        from tuillm.core.models.catalog import hf_cache_dir
        from tuillm.core.models.hub.download import bytes_here

        done = bytes_here(hf_cache_dir(), listing.repo, listing.commit, q.quant.files)
        if not done:
            return ""
        return "✓" if done >= q.quant.size else f"{100 * done // max(q.quant.size, 1)}%"

    # --- download ------------------------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#download-files")
    def choose_quant(self, event: DataTable.RowSelected) -> None:
        from tuillm.tui.screens.confirm import ConfirmScreen

        event.stop()
        if self.busy or self.listing is None or not 0 <= event.cursor_row < len(self.fits):
            return
        q = self.fits[event.cursor_row]
        if q.fit.verdict in (FITS, TIGHT):
            self.start(q)
            return
        need = format_bytes(q.fit.estimate.total_bytes)
        have = format_bytes(q.fit.estimate.available_bytes)
        self.app.push_screen(ConfirmScreen(f"{q.quant.quant} needs {need}, {have} available: it will not load. "
                                           "Download it anyway?"), lambda yes: self.start(q) if yes else None)

    def start(self, q: QuantFit) -> None:
        from tuillm.core.models.hub.pull import choice_of, run

        assert self.listing is not None
        choice = choice_of(self.listing, self.fits, q, f"{q.quant.quant}, chosen here")
        cancel = self.cancel = threading.Event()
        bar = self.query_one("#download-progress", ProgressBar)
        bar.update(total=q.quant.size, progress=0)
        bar.display = True
        self.status(f"downloading {q.quant.name}…")
        run_job(self, "download", lambda emit: run(choice, emit, cancel=cancel), Pulled)

    def on_job_progress(self, event: JobProgress) -> None:
        event.stop()
        e = event.event
        if isinstance(e, Progress) and e.stage == "download":
            self.query_one("#download-progress", ProgressBar).update(total=e.total, progress=e.done)
            self.status(e.message)
        elif isinstance(e, Progress) and e.stage == "verify":
            self.status(f"checking the sha256 of {e.message}…")
        elif isinstance(e, Log):
            self.notify(e.message, title="Download", markup=False)

    def on_pulled(self, event: Pulled) -> None:
        event.stop()
        self.cancel = None
        self.dismiss(event.result)

    def on_job_cancelled(self, event: JobCancelled) -> None:
        event.stop()
        self.cancel = None
        self.refresh_here()
        self.query_one("#download-progress", ProgressBar).display = False
        self.status("stopped; the part downloaded is kept: Enter on the quant resumes it")

    def on_job_failed(self, event: JobFailed) -> None:
        event.stop()
        self.cancel = None
        self.refresh_here()
        self.query_one("#download-progress", ProgressBar).display = False
        self.status(event.error)
        self.notify(event.error, title="Download", severity="error", markup=False)

    def refresh_here(self) -> None:
        """The HERE column again, after a download stopped (its kept part shows as a percentage)."""
        table = self.query_one("#download-files", DataTable)
        if self.listing is None or table.row_count != len(self.fits):
            return
        for row, q in enumerate(self.fits):
            table.update_cell_at(Coordinate(row, 5), self.here(self.listing, q))

    def action_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.set()  # the worker stops at its next chunk and reports JobCancelled
            self.status("stopping…")
            return
        self.dismiss(None)
