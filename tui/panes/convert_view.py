"""What the Convert pane writes on its widgets, as plain functions of the state (no widgets here).

The type list comes from the one registry (``tuillm.convert.types``): its order, best first as users pick, and
each type's note. Names, paths and errors come from files: every text made here is one terminal-safe line.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets.selection_list import Selection

from tuillm.convert.types import OUTPUT_TYPES, TYPE_NAMES
from tuillm.core.conversion.plan import output_name
from tuillm.core.models.catalog import CatalogResult
from tuillm.core.models.metadata import format_params
from tuillm.core.text import format_bytes, safe_line
from tuillm.tui.panes.convert_jobs import Inspection

NO_SOURCE = "Choose a source: an HF checkpoint converts, a GGUF re-quantizes."
NO_TICK = "Space ticks a type"
CANCEL_QUESTION = "Stop the conversion? The file being written is removed; completed files are kept."
# Once every file is written the job runs the quality report: stopping it then loses the report, no file.
REPORT_CANCEL_QUESTION = "Stop the quality report? Every file is written and is kept; only the report is lost."
SWEEP_CANCEL_QUESTION = "Stop the quality sweep? Nothing it wrote is kept."
SourceOption = tuple[Text, str]  # the source list's entry: what it shows, the path


def is_source_file(path: Path) -> bool:
    """The files the source field completes to (folders are always offered)."""
    return path.suffix.lower() == ".gguf"


def source_clash(source: Path, outputs: list[tuple[str, Path]]) -> str | None:
    """Why the job cannot start when an output is the source itself (a GGUF re-quantized to its own type in its
    own folder, or through a link to it); None when none is."""
    for out_type, path in outputs:
        try:
            same = path.exists() and path.samefile(source)
        except OSError:
            same = False
        if same:
            return safe_line(f"{path}: the {out_type} output would replace the source; choose another output folder")
    return None


def type_options(sizes: dict[str, int], source_name: str | None, ticked: set[str]) -> list[Selection[str]]:
    """One line per output type: its estimated size and the file it will write (or, with no source, its note)."""
    options = []
    for t in TYPE_NAMES:
        size = f"~{format_bytes(sizes[t])}" if t in sizes else ""
        detail = safe_line(output_name(source_name, t)) if source_name else OUTPUT_TYPES[t].note
        options.append(Selection(Text(f"{t:<7}{size:>11}  {detail}"), t, t in ticked))  # Text: not markup
    return options


def in_list_order(types: list[str]) -> list[str]:
    """The ticked types in the list's order (the order the job writes them)."""
    return [t for t in TYPE_NAMES if t in types]


def hint(ticked: list[str], sizes: dict[str, int]) -> str:
    if not ticked:
        return NO_TICK
    total = sum(sizes.get(t, 0) for t in ticked)
    return f"{len(ticked)} ticked" + (f", ~{format_bytes(total)} in all" if total else "")


def source_info(inspection: Inspection) -> str:
    """The line under the fields: what the source is and what will happen to it, or why it is not a source."""
    source = inspection.source
    if source is None:
        return safe_line(inspection.error or "not a model")
    what = "HF checkpoint → convert" if source.kind == "hf" else "GGUF → re-quantize"
    note = "sizes are estimates" if inspection.report_fits else "too big for the report here"
    return f"{what} · {format_params(source.params)} params · {note}"


def catalog_options(result: CatalogResult) -> list[SourceOption]:
    """The source list: every model found, with its kind and size, by path (a Text: a name like "[bold]x" is a
    name, not markup)."""
    options = []
    for entry in result.entries:
        kind = "HF checkpoint" if entry.info.format == "hf" else f"{entry.info.file_type} GGUF"
        options.append((Text(safe_line(f"{entry.name} ({kind}, {format_params(entry.info.params)})")),
                        str(entry.path)))
    return options


def kept_text(written: list[Path]) -> str:
    return safe_line(", ".join(p.name for p in written))


def progress_text(stage: str, message: str) -> str:
    """The progress label: a job's stage and message (which can name a file), one safe line."""
    return safe_line(f"{stage}: {message}")


def stop_words(sweeping: bool, in_report: bool) -> tuple[str, str]:
    """What stopping the running job loses: Esc's question, and the quit question's item."""
    if sweeping:
        return SWEEP_CANCEL_QUESTION, "a quality sweep (nothing it wrote is kept)"
    if in_report:
        return REPORT_CANCEL_QUESTION, "a quality report (every file is written and kept)"
    return CANCEL_QUESTION, "a conversion (the file being written is removed)"


def running_hint(sweeping: bool) -> str:
    return "Cancel keeps nothing" if sweeping else "Cancel keeps completed files"


def cancelled_texts(written: list[Path], in_report: bool) -> tuple[str, str, str]:
    """A cancelled conversion's progress label, log line and notification. In the report every output was
    complete: none was removed and the conversion itself finished."""
    kept = kept_text(written)
    if in_report:
        return ("report stopped", f"quality report stopped: every file was written and kept ({kept})",
                f"quality report stopped; every file was written: {kept}")
    return ("cancelled", "cancelled: the file in progress was removed" + (f"; kept {kept}" if kept else ""),
            "cancelled" + (f"; completed files kept: {kept}" if kept else ""))


def done_text(written: list[Path]) -> str:
    n = len(written)
    return f"done: {n} file{'s' if n != 1 else ''} written"
