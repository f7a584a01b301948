"""The quality sweep: one source quantized to several types, each measured, and the type this machine should use.

``run_sweep`` writes every type with ``convert_many`` (one 16-bit intermediate, kept for the sweep as the
baseline; one importance matrix when the job takes one) into a hidden folder inside the output folder, then for
each file: its size and bits per weight (bytes * 8 / the file's parameter count), the quality report's figures
against the 16-bit model on its held-out text (``quality.compare``: mean KL divergence, top-1 agreement,
perplexity ratio), and decode tokens/s through the chat's own loader (the same threads for every type). The
recommendation is the lowest-KL type whose verdict is "fits" (with headroom) by the one fit function
(``core.models.fit.load_fit``) at the chosen context. The kept files are renamed out of the hidden folder; the
folder, with whatever else is in it, goes at the end, on cancel and on error alike.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tuillm.convert.output import TEMP_MARK, describe_os_error, remove_stale
from tuillm.convert.types import OUTPUT_TYPES
from tuillm.core.conversion.sweep_options import IMATRIX_AUTO, KEEP_BEST, SweepRequest, kept_types
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Progress, ignore
from tuillm.core.models.memory import FITS
from tuillm.core.settings import Config

__all__ = ["COLUMNS", "MEASURE_STAGE", "QuantRow", "SweepResult", "judge", "recommend", "row_cells", "run_sweep"]

MEASURE_STAGE = "measure"
WORK_NAME = "tuillm-sweep"  # the hidden work folder in the output folder: .tuillm-sweep.tuillm-<pid>.<random>
DECODE_TOKENS = 32  # timed decode steps per type: enough for a steady rate, a second or two on a small model
DECODE_PROMPT = "The harbour town woke slowly. Fishing boats came back before dawn,"


@dataclass(frozen=True)
class QuantRow:
    out_type: str
    file_name: str
    size_bytes: int
    params: int
    kl: float  # mean KL(16-bit || this) per token, nats
    top1: float  # share of positions where both pick the same next token
    ppl_ratio: float  # perplexity / the 16-bit model's, on the same text
    tokens_per_s: float
    memory_bytes: int  # the fit estimate's total for the chosen load
    fit: str  # "fits" | "tight" | "too big"

    @property
    def bpw(self) -> float:
        return self.size_bytes * 8 / self.params if self.params else 0.0


@dataclass
class SweepResult:
    source: Path
    baseline: str  # what the rows are measured against: "f16", "bf16", or the source GGUF's file name
    rows: list[QuantRow]
    recommended: str | None  # None: no type fits with headroom
    n_ctx: int
    available_bytes: int
    threads: int
    tokens: int  # tokens of the held-out text the figures are over
    imatrix: str | None  # "auto", a file, or None when no importance matrix was used
    output_dir: Path
    kept: list[Path] = field(default_factory=list)

    def row(self, out_type: str) -> QuantRow | None:
        return next((r for r in self.rows if r.out_type == out_type), None)

    def to_json(self) -> dict[str, Any]:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k != "rows"}
        data["kept"] = [str(p) for p in self.kept]
        data["types"] = [{**asdict(r), "bpw": round(r.bpw, 4)} for r in self.rows]
        return data


# The table's columns, for the CLI and the Convert pane alike (``row_cells``).
COLUMNS = ("TYPE", "SIZE", "BPW", "KL", "TOP-1", "PPL", "TOK/S", "MEMORY", "FIT")


def row_cells(row: QuantRow) -> tuple[str, ...]:
    """One row's cells, in ``COLUMNS`` order: KL in nats, PPL as the ratio to the 16-bit model's."""
    from tuillm.core.text import format_bytes

    return (row.out_type, format_bytes(row.size_bytes), f"{row.bpw:.2f}", f"{row.kl:.4f}", f"{row.top1 * 100:.1f}%",
            f"{row.ppl_ratio:.3f}", f"{row.tokens_per_s:.1f}", format_bytes(row.memory_bytes), row.fit)


def recommend(rows: list[QuantRow]) -> str | None:
    """The lowest-KL type whose fit verdict is "fits" (room left for everything else), or None."""
    fitting = [r for r in rows if r.fit == FITS]
    return min(fitting, key=lambda r: r.kl).out_type if fitting else None


def _tools_missing() -> str | None:
    """Why an automatic importance matrix cannot be made here (llama.cpp's tools not built), or None."""
    from tuillm.convert.errors import ConvertError
    from tuillm.convert.llama_tools import find_tool

    try:
        find_tool("llama-quantize")
        find_tool("llama-imatrix")
    except ConvertError as exc:
        return str(exc)
    return None


def _imatrix_kwargs(request: SweepRequest, name: str, emit: Emit) -> tuple[dict[str, Any], str | None]:
    """convert_many's importance-matrix keywords, and what the result says was used. An automatic matrix already
    beside the kept files (made from the same source and text) is reused as a given file: the job would look for
    it in the sweep's hidden folder."""
    if request.imatrix is None:
        return {"imatrix": None}, None
    if request.imatrix != IMATRIX_AUTO:
        return {"imatrix": str(request.imatrix)}, str(request.imatrix)
    if not request.imatrix_asked and (missing := _tools_missing()) is not None:
        needs = [t for t in request.types if OUTPUT_TYPES[t].needs_imatrix]
        if not needs:  # only the default asked for one: the sweep runs without, and says so
            emit(Log(f"no importance matrix: {missing}", level="warning"))
            return {"imatrix": None}, None
    from tuillm.convert import imatrix as im
    from tuillm.convert.errors import ConvertError

    beside = im.auto_path(request.output_dir, name)
    try:
        if request.calibration is not None:
            text = im.check_calibration(request.calibration).read_text(encoding="utf-8")
        else:
            from tuillm.convert.calibration import CALIBRATION_TEXT as text
        if im.reusable(beside, im.imatrix_key(request.source, text)):
            return {"imatrix": str(beside)}, str(beside)
    except (ConvertError, OSError, UnicodeDecodeError):
        pass  # a bad text is refused by the job in its words; a matrix not ours is not reused nor replaced
    kwargs: dict[str, Any] = {"imatrix": IMATRIX_AUTO}
    if request.calibration is not None:
        kwargs["calibration"] = request.calibration
    return kwargs, IMATRIX_AUTO


def _keep_auto_imatrix(work: Path, folder: Path, name: str) -> Path | None:
    """Move an automatic matrix computed in the hidden folder (and its sidecar) beside the kept files, where the
    next conversion of the same source reuses it; never over a file tuillm did not make there."""
    from tuillm.convert import imatrix as im

    made, target = im.auto_path(work, name), im.auto_path(folder, name)
    made_sidecar, target_sidecar = work / (name + im.SIDECAR), folder / (name + im.SIDECAR)
    if not made.is_file() or not made_sidecar.is_file() or (target.exists() and not target_sidecar.exists()):
        return None
    os.replace(made_sidecar, target_sidecar)
    os.replace(made, target)
    return target


def _check_targets(request: SweepRequest, names: dict[str, str]) -> None:
    """A file the sweep may keep must not replace one that is there: refused before anything is written."""
    candidates = request.types if request.keep == KEEP_BEST else kept_types(request.keep, request.types, None)
    taken = [request.output_dir / names[t] for t in candidates if (request.output_dir / names[t]).exists()]
    if taken:
        raise TuillmError(f"{taken[0]}: exists; move it away or choose another --output-dir")


def run_sweep(request: SweepRequest, *, config: Config, emit: Emit = ignore, cancel: threading.Event | None = None,
              available: int | None = None, offload: bool | None = None) -> SweepResult:
    """The sweep of ``request`` (see the module's docstring). ``available``/``offload``: what the fit verdicts
    are judged against (None: measured now, as the Models pane does)."""
    from tuillm.convert.quantize import intermediate_type
    from tuillm.core.conversion.job import convert_many
    from tuillm.core.conversion.plan import open_source, output_name
    from tuillm.core.models.hardware import default_threads

    source = open_source(request.source)
    names = {t: output_name(source.name, t) for t in request.types}
    _check_targets(request, names)
    imatrix_kwargs, imatrix_used = _imatrix_kwargs(request, source.name, emit)
    threads = request.threads or config.threads or default_threads()
    try:
        request.output_dir.mkdir(parents=True, exist_ok=True)
        # Named with the pid, as every temporary of an output: the folder of a sweep killed outright (SIGKILL) is
        # removed by the next sweep into the same folder; one of a sweep still running is left alone.
        remove_stale(request.output_dir / WORK_NAME)
        work = Path(tempfile.mkdtemp(prefix=f".{WORK_NAME}.{TEMP_MARK}{os.getpid()}.", dir=request.output_dir))
    except OSError as exc:
        made = Path(exc.filename) if exc.filename else request.output_dir / f".{WORK_NAME}"
        raise TuillmError(describe_os_error(exc, made)) from None
    try:
        outputs = [(t, work / names[t]) for t in request.types]
        if source.kind == "hf":  # the 16-bit file is the baseline: written as an output, it is the intermediate too
            base_type = intermediate_type(source.path)
            reference = work / output_name(source.name, base_type)
            outputs.insert(0, (base_type, reference))
            baseline = base_type
        else:
            reference, baseline = source.path, source.path.name
        convert_many(source.path, outputs, emit=emit, cancel=cancel, threads=threads, **imatrix_kwargs)
        measured = _measure(reference, [(t, work / names[t]) for t in request.types], emit, cancel, threads)
        files = {t: work / names[t] for t in request.types}
        rows, n_ctx, available_bytes = judge(measured.rows, files, config, n_ctx=request.n_ctx,
                                             available=available, offload=offload)
        result = SweepResult(request.source, baseline, rows, recommend(rows), n_ctx, available_bytes, threads,
                             measured.tokens, imatrix_used, request.output_dir)
        for out_type in kept_types(request.keep, request.types, result.recommended):
            target = request.output_dir / names[out_type]
            os.replace(work / names[out_type], target)  # complete and measured: now under its own name
            result.kept.append(target)
            emit(Log(f"kept {target}"))
        kept_matrix = _keep_auto_imatrix(work, request.output_dir, source.name) \
            if imatrix_used == IMATRIX_AUTO and result.kept else None
        if kept_matrix is not None:
            result.imatrix = str(kept_matrix)
            emit(Log(f"importance matrix kept as {kept_matrix} (later conversions of this source reuse it)"))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Measured:
    tokens: int
    rows: list[QuantRow]  # not judged yet: no memory, no verdict


def _measure(reference: Path, files: list[tuple[str, Path]], emit: Emit, cancel: threading.Event | None,
             threads: int) -> _Measured:
    """Each file against ``reference`` on the quality report's text, and its decode speed."""
    from tuillm.core.conversion.quality import REPORT_TEXT, compare
    from tuillm.core.llama.logits import llama_logits, llama_tokenize
    from tuillm.core.models.metadata import read_info

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()

    n = len(files)
    emit(Progress(MEASURE_STAGE, 0, n + 1, f"the baseline {reference.name}"))
    ids = llama_tokenize(reference, REPORT_TEXT)[:512]
    ref_logits = llama_logits(reference, ids, threads=threads)
    rows = []
    for i, (out_type, path) in enumerate(files, 1):
        check_cancel()
        emit(Progress(MEASURE_STAGE, i, n + 1, f"{out_type}: quality and speed ({i}/{n})"))
        c = compare(ref_logits, llama_logits(path, ids, threads=threads), ids)
        check_cancel()
        speed = decode_speed(path, threads)
        params = read_info(path).params
        rows.append(QuantRow(out_type, path.name, path.stat().st_size, params, c.mean_kl, c.top1_agreement,
                             c.ppl_ratio, speed, 0, ""))
        emit(Log(f"{out_type}: KL {c.mean_kl:.4f}, top-1 {c.top1_agreement * 100:.1f}%, "
                 f"perplexity x{c.ppl_ratio:.3f}, {speed:.1f} tokens/s"))
    emit(Progress(MEASURE_STAGE, n + 1, n + 1, f"{n} type{'s' if n != 1 else ''} measured"))
    return _Measured(len(ids), rows)


def decode_speed(path: Path, threads: int, tokens: int = DECODE_TOKENS) -> float:
    """Decode tokens/s of ``path`` on the CPU through the chat's loader: greedy, after a short prompt; the first
    token (which waits for the prompt) is not timed."""
    from tuillm.core.llama.abort import StopFlag
    from tuillm.core.llama.model import LlamaModel
    from tuillm.core.llama.options import LoadOptions, Sampling

    model = LlamaModel.load(path, LoadOptions(n_ctx=256, n_gpu_layers=0, n_threads=threads, check_memory=False))
    try:
        prompt = model.tokenize(DECODE_PROMPT, add_bos=model.add_bos)
        gen = model.generate(prompt, Sampling(temperature=0.0, top_k=1, repeat_penalty=1.0), StopFlag())
        try:
            next(gen)
            start = time.perf_counter()
            for _ in range(tokens):
                next(gen)
            return tokens / (time.perf_counter() - start)
        finally:
            gen.close()
    finally:
        model.close()


def judge(rows: list[QuantRow], files: dict[str, Path], config: Config, *, n_ctx: int | None = None,
          available: int | None = None, offload: bool | None = None) -> tuple[list[QuantRow], int, int]:
    """``rows`` with each file's fit verdict and memory by ``load_fit`` (the Models pane's and the chat's), all
    against the same ``available`` bytes (None: measured once, now); also the context and the available bytes it
    judged at. A finished sweep's kept files can be judged again for another machine or context."""
    from tuillm.core.models.fit import load_fit
    from tuillm.core.models.hardware import available_ram
    from tuillm.core.models.metadata import read_info

    if available is None:
        available = available_ram()
    judged: list[QuantRow] = []
    ctx = n_ctx or config.default_ctx
    for row in rows:
        fit = load_fit(read_info(files[row.out_type]), config, n_ctx=n_ctx, available=available, offload=offload)
        ctx = fit.estimate.n_ctx
        judged.append(replace(row, memory_bytes=fit.estimate.total_bytes, fit=fit.verdict))
    return judged, ctx, available
