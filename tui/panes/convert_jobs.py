"""The Convert pane's background work, started on ``tui.jobs.run_job``, and the typed message each success posts.

Three jobs: discovering the sources (the catalog), reading a source's headers (sizes, whether the report fits) and
the conversion itself (``convert_many``). Progress arrives as ``JobProgress``; a failure as ``JobFailed``, a cancel
as ``JobCancelled``, each with the job's name below. A discovery or a header read that a newer one replaced carries
an old generation number and is dropped by the pane.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message
from textual.widget import Widget

from tuillm.core.conversion.job import REPORT_STAGE, OutputResult, convert_many
from tuillm.core.conversion.plan import Source, estimate_sizes, open_source, report_fits
from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit, Progress
from tuillm.core.models.catalog import CatalogResult, discover
from tuillm.tui.jobs import run_job
from tuillm.tui.session import Session

CATALOG, INSPECT, CONVERT = "convert-catalog", "convert-inspect", "convert-job"


@dataclass(frozen=True)
class Inspection:
    """What the pane shows about a source before anything is written; ``error`` when it is not one."""

    path: Path
    source: Source | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    report_fits: bool = False
    error: str | None = None


class SourcesLoaded(Message):
    def __init__(self, generation: int, result: CatalogResult) -> None:
        super().__init__()
        self.generation = generation
        self.result = result


class SourceInspected(Message):
    def __init__(self, generation: int, inspection: Inspection) -> None:
        super().__init__()
        self.generation = generation
        self.inspection = inspection


class ConversionDone(Message):
    def __init__(self, results: list[OutputResult]) -> None:
        super().__init__()
        self.results = results


def in_report(progress: Progress | None) -> bool:
    """Whether a conversion whose latest progress is ``progress`` runs its quality report: every output is
    complete by then, and a cancel stops the report only."""
    return progress is not None and progress.stage == REPORT_STAGE


def start_discovery(owner: Widget, session: Session, generation: int) -> None:
    def job(_emit: Emit) -> CatalogResult:
        return discover(session.model_dirs, config=session.config, available=session.available_ram)

    run_job(owner, CATALOG, job, lambda result: SourcesLoaded(generation, result))


def inspect(path: Path, available: int | None) -> Inspection:
    """The source's headers, each output type's size, and whether the report fits in ``available`` bytes
    (measured now when None)."""
    try:
        source = open_source(path)
        sizes = estimate_sizes(source)
        if available is None:
            from tuillm.core.models.hardware import available_ram

            available = available_ram()
        return Inspection(path, source, sizes, report_fits(source, available))
    except TuillmError as exc:  # not a source (a pasted NUL included): said on the info line, not a failed job
        return Inspection(path, error=str(exc))


def start_inspection(owner: Widget, path: Path, available: int | None, generation: int) -> None:
    run_job(owner, INSPECT, lambda _emit: inspect(path, available),
            lambda inspection: SourceInspected(generation, inspection))


def start_conversion(owner: Widget, src: Path, outputs: list[tuple[str, Path]], report: bool,
                     cancel: threading.Event, on_written: Callable[[OutputResult], None], *,
                     force: bool = False, imatrix: str | None = None) -> None:
    """``on_written`` runs in the worker as each output completes (before the reports); ``force``: existing outputs
    are replaced (the user was asked); ``imatrix``: None, "auto" or a matrix file (convert_many's)."""

    def job(emit: Emit) -> list[OutputResult]:
        return convert_many(src, outputs, emit=emit, cancel=cancel, report=report, on_written=on_written,
                            force=force, imatrix=imatrix)

    run_job(owner, CONVERT, job, ConversionDone)
