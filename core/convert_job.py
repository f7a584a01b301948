"""Conversion jobs for both front ends: HF folder -> GGUF, GGUF -> re-quantized GGUF, with events and cancel.

Progress arrives from the converter as plain callbacks and leaves as ``Progress`` events; a set cancel flag
raises ``Cancelled`` at the next tensor (the converter then removes its temporary file); converter errors
become ``TuillmError`` with the same one-line message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tuillm.convert.errors import ConvertError
from tuillm.convert.hf_to_gguf import ConvertProgress
from tuillm.convert.quantize import OUTPUT_TYPES, convert, quantize_gguf
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Progress, ignore

__all__ = ["OUTPUT_TYPES", "convert_checkpoint", "quantize_file", "report_quality"]


def _progress_callback(emit: Emit, cancel: threading.Event | None) -> Callable[[ConvertProgress], None]:
    def on_progress(p: ConvertProgress) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if p.stage == "convert":
            message = (f"{p.tensors_done}/{p.tensors_total} tensors, {p.bytes_done / 1e6:.0f} MB, "
                       f"{p.mb_per_s:.0f} MB/s")
            emit(Progress("convert", p.tensors_done, p.tensors_total, message))
        else:
            emit(Progress("quantize", p.tensors_done, p.tensors_total, "llama.cpp quantizer"))

    return on_progress


def convert_checkpoint(src: Path, out: Path, out_type: str = "f16", *, emit: Emit = ignore,
                       cancel: threading.Event | None = None, threads: int | None = None) -> Path:
    """HF checkpoint folder -> GGUF of ``out_type``; nothing is left under ``out`` unless it completed."""
    try:
        path = convert(Path(src), Path(out), out_type, progress=_progress_callback(emit, cancel), threads=threads)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    if cancel is not None and cancel.is_set():  # set during the last, uninterruptible step
        Path(out).unlink(missing_ok=True)
        raise Cancelled()
    emit(Log(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB)"))
    return path


def quantize_file(src: Path, out: Path, out_type: str, *, emit: Emit = ignore,
                  cancel: threading.Event | None = None, threads: int | None = None) -> Path:
    """GGUF -> GGUF of another type through llama.cpp's quantizer."""
    from tuillm.convert.quantize import input_is_quantized

    if Path(src).is_file() and input_is_quantized(Path(src)):
        emit(Log(f"{src} is already quantized: re-quantizing adds error; convert from the original checkpoint "
                 "(or an f16 GGUF) for the best result", level="warning"))
    try:
        path = quantize_gguf(Path(src), Path(out), out_type, progress=_progress_callback(emit, cancel),
                             threads=threads)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    if cancel is not None and cancel.is_set():
        Path(out).unlink(missing_ok=True)
        raise Cancelled()
    emit(Log(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB)"))
    return path


def report_quality(src: Path, gguf_path: Path, out_type: str | None = None, *, emit: Emit = ignore) -> list[str]:
    """Run the HF original and the GGUF on the built-in text; the report as lines (also emitted as Logs).

    For a quantized ``out_type`` an f16 GGUF of the same checkpoint is written to a temporary folder (and removed)
    so the perplexity ratio against the f16 is reported too.
    """
    import tempfile

    from tuillm.core.quality import quality_report

    quantized = out_type is not None and out_type not in ("f32", "f16", "bf16")
    emit(Progress("report", 0, 0, "running the original (transformers) and the result (llama.cpp)"))
    with tempfile.TemporaryDirectory(prefix=".tuillm-report-", dir=Path(gguf_path).parent) as tmp:
        f16 = convert_checkpoint(Path(src), Path(tmp) / "f16.gguf", "f16") if quantized else None
        try:
            comparison = quality_report(Path(src), Path(gguf_path), f16_gguf=f16)
        except ImportError as exc:
            raise TuillmError(f"--report needs transformers and torch ({exc.name} is missing)") from None
    lines = comparison.lines()
    for line in lines:
        emit(Log(line))
    return lines
