"""Conversion jobs for both front ends: HF folder -> GGUF, GGUF -> re-quantized GGUF, with events and cancel.

Progress arrives from the converter as plain callbacks and leaves as ``Progress`` events (tensors, MB/s, ETA);
a set cancel flag raises ``Cancelled`` at the next tensor (or within 0.2 s while llama.cpp quantizes: its child
process is killed), and the temporary file is removed; converter errors become ``TuillmError`` with the same
one-line message.

``convert_many`` writes several types from one source. From an HF checkpoint, every type that llama.cpp's
quantizer makes (K-quants, q4_0...) is quantized from ONE f16/bf16 intermediate: a requested f16/bf16 output
serves as it, else a hidden temporary file in the output folder, removed at the end whatever happens. The same
16-bit file is the baseline of the quality reports' perplexity ratio. On cancel (or an error), outputs that
were complete before it are kept and reported through ``on_written``; the one in progress never appears.

With an importance matrix (``imatrix``: "auto" or a file) or ``--tensor-type`` overrides, the quantized outputs
go through llama-quantize; an automatic matrix is computed once per job from the 16-bit file, as a step of its own,
and shared by every output (see imatrix_step).

Before anything is read, every output is checked (``tuillm.convert.output.check_output``): never the source or a
file inside it, never an existing file unless ``force``; temporaries a killed run left beside an output go.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tuillm.convert.errors import ConvertError
from tuillm.convert.output import check_output, remove_stale, temp_name
from tuillm.convert.progress import ConvertProgress
from tuillm.convert.types import CONVERT_DEFAULT, OUTPUT_TYPES, check_type
from tuillm.core.conversion.imatrix_step import (
    ImatrixChoice,
    check_tools,
    ensure_imatrix,
    resolve_imatrix,
    takes_imatrix,
)
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Progress, ignore
from tuillm.core.files import input_problem
from tuillm.core.paths import expand_user

__all__ = ["REPORT_STAGE", "OutputResult", "convert_checkpoint", "convert_many"]

REPORT_STAGE = "report"  # the Progress stage of the quality reports, after the files' own "i/n type" stages


def format_eta(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


# A step's ETA is extrapolated from its rate so far: in its first moments (the first tensors, often small or
# read from a cold cache) that rate says nothing, and the ETA read hours. It is shown once both are reached.
ETA_MIN_SECONDS = 2.0
ETA_MIN_FRACTION = 0.05


def progress_message(p: ConvertProgress) -> str:
    """``123/272 tensors, 45 MB/s, ETA 0:12`` (the ETA once it is meaningful: see ETA_MIN_*): short enough for one
    line beside a progress bar at 80 columns."""
    parts = [f"{p.tensors_done}/{p.tensors_total} tensors", f"{p.mb_per_s:.0f} MB/s"]
    meaningful = p.seconds >= ETA_MIN_SECONDS and p.bytes_done >= ETA_MIN_FRACTION * p.bytes_total
    if meaningful and 0 < p.bytes_done < p.bytes_total:
        parts.append(f"ETA {format_eta(p.seconds * (p.bytes_total - p.bytes_done) / p.bytes_done)}")
    return ", ".join(parts)


def _progress_callback(emit: Emit, cancel: threading.Event | None, stage: str) -> Callable[[ConvertProgress], None]:
    """The writers' progress as ``Progress`` events of ``stage`` ("2/3 q4_k_m"); raises Cancelled once cancelled."""

    def on_progress(p: ConvertProgress) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        emit(Progress(stage, p.tensors_done, p.tensors_total, progress_message(p)))

    return on_progress


def convert_checkpoint(src: Path, out: Path, out_type: str = CONVERT_DEFAULT, *, emit: Emit = ignore,
                       cancel: threading.Event | None = None, threads: int | None = None,
                       force: bool = False, imatrix: str | None = None, calibration: Path | None = None,
                       tensor_types: dict[str, str] | None = None) -> Path:
    """One output of ``convert_many``; here a cancel that comes too late to stop the last (uninterruptible) step
    still removes the file: the caller asked for one file, and a cancelled job leaves none under ``out``."""
    written: list[Path] = []
    try:
        convert_many(Path(src), [(out_type, Path(out))], emit=emit, cancel=cancel, threads=threads, force=force,
                     on_written=lambda result: written.append(result.path), imatrix=imatrix,
                     calibration=calibration, tensor_types=tensor_types)
    except Cancelled:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written[0]


# --- several outputs from one source -------------------------------------------------------------------------------


@dataclass
class OutputResult:
    out_type: str
    path: Path
    size: int
    report: list[str] = field(default_factory=list)  # filled when the quality report ran


def _check_outputs(src: Path, outputs: Sequence[tuple[str, Path]], force: bool) -> list[tuple[str, Path]]:
    if not outputs:
        raise TuillmError("choose at least one output type")
    checked: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for out_type, out in outputs:
        try:
            out_type = check_type(out_type)
        except ConvertError as exc:
            raise TuillmError(str(exc)) from None
        out = expand_user(out)
        try:
            check_output(out, [src], force=force)  # first: it refuses a loop of links, which resolve() raises on
        except ConvertError as exc:
            raise TuillmError(str(exc)) from None
        if not out.parent.is_dir():  # said before any work starts, not after the first progress line
            raise TuillmError(f"{out.parent}: {'not a folder' if out.parent.exists() else 'no such folder'}")
        key = out.resolve()
        if key in seen:
            raise TuillmError(f"{out}: named for two outputs")
        seen.add(key)
        checked.append((out_type, out))
    return checked


def convert_many(src: Path, outputs: Sequence[tuple[str, Path]], *, emit: Emit = ignore,
                 cancel: threading.Event | None = None, report: bool = False, threads: int | None = None,
                 on_written: Callable[[OutputResult], None] | None = None, force: bool = False,
                 imatrix: str | None = None, calibration: Path | None = None,
                 tensor_types: dict[str, str] | None = None) -> list[OutputResult]:
    """Write each ``(type, path)`` from ``src`` (an HF checkpoint folder, or a GGUF file to re-quantize).

    See the module's docstring for the shared intermediate and what a cancel keeps. ``report``: afterwards, the
    quality report of each output (top-1 agreement, KL, perplexity ratios), in ``OutputResult.report``.
    ``on_written`` is called as soon as each output is complete (before the reports). An existing output is
    replaced only with ``force``. ``imatrix``: None, "auto" (computed on the built-in text, or on ``calibration``)
    or a matrix file; ``tensor_types``: ``--tensor-type`` overrides, pattern -> ggml type. The types that need a
    matrix get "auto" without asking.
    """
    src = expand_user(src)
    problem = input_problem(src)
    if problem:
        raise TuillmError(f"{src}: {problem}")
    plan = _check_outputs(src, outputs, force)
    tensor_types = _check_tensor_types(tensor_types, plan)
    choice = resolve_imatrix(src, plan, imatrix, Path(calibration) if calibration else None, tensor_types)
    check_tools(choice, tensor_types)
    if choice is not None:
        choice.announce(emit)
    quant = _Quant(choice, tensor_types, threads)
    for _, out in plan:
        remove_stale(out)
    results: list[OutputResult] = []

    def done(out_type: str, path: Path) -> None:
        result = OutputResult(out_type, path, path.stat().st_size)
        results.append(result)
        emit(Log(f"wrote {path} ({result.size / 1e6:.0f} MB)"))
        if on_written is not None:
            on_written(result)

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()

    try:
        if src.is_dir():
            mid = _convert_outputs(src, plan, emit, cancel, report, quant, done, check_cancel)
        else:
            mid = None
            _requantize_outputs(src, plan, emit, cancel, quant, done, check_cancel)
        try:
            if report:
                _reports(src, results, mid[0] if mid else None, emit, check_cancel)
        finally:
            if mid is not None and mid[1]:
                mid[0].unlink(missing_ok=True)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    return results


def _check_tensor_types(tensor_types: Mapping[str, str] | None, plan: list[tuple[str, Path]]) -> dict[str, str]:
    from tuillm.convert.quant_rules import check_tensor_types

    if not tensor_types:
        return {}
    try:
        checked = check_tensor_types([f"{pattern}={qtype}" for pattern, qtype in tensor_types.items()])
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    if not any(OUTPUT_TYPES[t].quantized for t, _ in plan):
        raise TuillmError("--tensor-type applies to quantized types (q4_k_m, q8_0...), not to "
                          + ", ".join(t for t, _ in plan))
    return checked


@dataclass(frozen=True)
class _Quant:
    """What every quantized output of one job shares: the importance matrix and the overrides."""

    imatrix: ImatrixChoice | None
    tensor_types: dict[str, str]
    threads: int | None

    def direct(self, out_type: str) -> bool:
        """Written by our converter; an override on q8_0 takes llama.cpp's quantizer (which applies it)."""
        t = OUTPUT_TYPES[out_type]
        return t.direct and not (self.tensor_types and t.quantized)

    def quantize(self, mid: Path, path: Path, out_type: str, progress: Callable[[ConvertProgress], None],
                 temporary: bool = False) -> None:
        from tuillm.convert.quantize import quantize_gguf

        matrix = self.imatrix.path if self.imatrix is not None and takes_imatrix(out_type) else None
        quantize_gguf(mid, path, out_type, progress=progress, threads=self.threads, imatrix=matrix,
                      tensor_types=self.tensor_types if OUTPUT_TYPES[out_type].quantized else None,
                      temporary_input=temporary)


_IMATRIX = "imatrix"  # the step that computes the importance matrix (not an output type)


def _convert_outputs(src: Path, plan: list[tuple[str, Path]], emit: Emit, cancel: threading.Event | None,
                     report: bool, quant: _Quant, done: Callable[[str, Path], None],
                     check_cancel: Callable[[], None]) -> tuple[Path, bool] | None:
    """The HF side; returns the 16-bit GGUF left for the reports (path, whether it is temporary) or None."""
    # gguf and numpy (and llama.cpp's quantizer): imported by a conversion, not when the app starts.
    from tuillm.convert.hf_to_gguf import convert_hf
    from tuillm.convert.quantize import intermediate_type

    threads = quant.threads
    direct = [(t, p) for t, p in plan if quant.direct(t)]
    quants = [(t, p) for t, p in plan if not quant.direct(t)]
    # A 16-bit file is needed for llama.cpp's quantizer, and as the baseline of a quantized output's report.
    need_mid = bool(quants) or (report and any(OUTPUT_TYPES[t].quantized for t, _ in plan))
    mid: tuple[Path, bool] | None = None
    steps: list[tuple[str, Path, str]] = []  # (type, path, label)
    if need_mid:
        mid_type = intermediate_type(src)
        given = next(((t, p) for t, p in direct if t == mid_type), None) or \
            next(((t, p) for t, p in direct if t in ("f16", "bf16")), None)
        if given is not None:
            direct.remove(given)
            mid = (given[1], False)
            steps.append((given[0], given[1], given[0]))
        else:
            first = (quants or plan)[0][1]
            mid = (temp_name(first, f"{mid_type}.gguf"), True)
            steps.append((mid_type, mid[0], f"{mid_type} (temp)"))
    if quant.imatrix is not None and not quant.imatrix.ready:
        steps.append((_IMATRIX, quant.imatrix.path, _IMATRIX))
    steps += [(t, p, t) for t, p in direct] + [(t, p, t) for t, p in quants]
    n = len(steps)
    try:
        for i, (out_type, path, label) in enumerate(steps, 1):
            check_cancel()
            stage = f"{i}/{n} {label}"
            if n > 1:  # one output: the progress bar says it all
                emit(Log(f"step {stage}: {path.name}"))
            progress = _progress_callback(emit, cancel, stage)
            if out_type == _IMATRIX:
                assert mid is not None and quant.imatrix is not None
                ensure_imatrix(quant.imatrix, mid[0], emit, cancel, stage, threads)
                continue
            if quant.direct(out_type):
                convert_hf(src, path, out_type, progress=progress, threads=threads)
            else:
                assert mid is not None
                quant.quantize(mid[0], path, out_type, progress, temporary=mid[1])
            if not (mid is not None and mid[1] and path == mid[0]):
                done(out_type, path)
        check_cancel()
    except BaseException:
        if mid is not None and mid[1]:
            mid[0].unlink(missing_ok=True)
        raise
    return mid


def _requantize_outputs(src: Path, plan: list[tuple[str, Path]], emit: Emit, cancel: threading.Event | None,
                        quant: _Quant, done: Callable[[str, Path], None],
                        check_cancel: Callable[[], None]) -> None:
    from tuillm.convert.quantize import input_is_quantized

    if input_is_quantized(src):
        emit(Log(f"{src.name} is already quantized: re-quantizing adds error; convert from the original checkpoint "
                 "(or an f16 GGUF) for the best result", level="warning"))
    computing = quant.imatrix is not None and not quant.imatrix.ready
    n = len(plan) + computing
    if quant.imatrix is not None and computing:  # from the input itself: best when it is a 16-bit file
        emit(Log(f"step 1/{n} {_IMATRIX}: {quant.imatrix.path.name}"))
        ensure_imatrix(quant.imatrix, src, emit, cancel, f"1/{n} {_IMATRIX}", quant.threads)
    for i, (out_type, path) in enumerate(plan, 1 + computing):
        check_cancel()
        stage = f"{i}/{n} {out_type}"
        if n > 1:  # one output: the progress bar says it all
            emit(Log(f"step {stage}: {path.name}"))
        quant.quantize(src, path, out_type, _progress_callback(emit, cancel, stage))
        done(out_type, path)
    check_cancel()


def _reports(src: Path, results: list[OutputResult], mid: Path | None, emit: Emit,
             check_cancel: Callable[[], None]) -> None:
    """Each output against the original on the built-in text: the HF model in transformers (computed once), or
    the input GGUF when re-quantizing; a quantized output's perplexity is also set against the 16-bit GGUF."""
    from tuillm.convert.quantize import intermediate_type
    from tuillm.core.conversion.quality import REPORT_TEXT, compare, hf_logits, perplexity
    from tuillm.core.llama.logits import llama_logits, llama_tokenize

    if not results:
        return
    n = len(results)
    # The report is a stage of its own (tens of seconds on a small model): one unit per model it runs, the
    # message naming the one running now, so the bar moves on after the last file instead of standing still.
    units = 1 + (mid is not None) + n
    emit(Progress(REPORT_STAGE, 0, units, "the original on the built-in text"))
    ids = llama_tokenize(results[0].path, REPORT_TEXT)[:512]
    if len(ids) < 2:
        raise TuillmError("quality report: the text is too short")
    check_cancel()
    if src.is_dir():
        try:
            reference = hf_logits(src, ids)
        except ImportError as exc:
            raise TuillmError(f"the quality report needs transformers and torch ({exc.name} is missing)") from None
        against = "the original (transformers)"
    else:
        reference = llama_logits(src, ids)
        against = f"the input {src.name}"
    check_cancel()
    if mid is not None:
        emit(Progress(REPORT_STAGE, 1, units, f"the 16-bit baseline {mid.name}"))
    mid_logits = llama_logits(mid, ids) if mid is not None else None
    ppl_mid = perplexity(mid_logits, ids) if mid_logits is not None else None
    # The baseline is a requested f16/bf16 output when there is one, else the temporary intermediate.
    given = next((r.out_type for r in results if r.path == mid), None)
    baseline_type = (given or intermediate_type(src)) if ppl_mid is not None else None
    if not any(r.path == mid for r in results):
        mid_logits = None  # a temporary 16-bit file: only its perplexity was needed
    for i, result in enumerate(results, 1):
        check_cancel()
        emit(Progress(REPORT_STAGE, units - n + i - 1, units, f"{result.path.name} ({i}/{n})"))
        logits = mid_logits if mid_logits is not None and result.path == mid else llama_logits(result.path, ids)
        comparison = compare(reference, logits, ids)
        if OUTPUT_TYPES[result.out_type].quantized and ppl_mid is not None and result.path != mid:
            comparison = replace(comparison, ppl_f16=ppl_mid, baseline_type=baseline_type)
        result.report = [f"{result.path.name} against {against}:", *comparison.lines()]
        for line in result.report:
            emit(Log(line))
    emit(Progress(REPORT_STAGE, units, units, f"{n} report{'s' if n != 1 else ''} done"))
