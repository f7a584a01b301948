"""The importance-matrix step of a conversion job: which matrix (none, a user's file, or an automatic one kept
beside the outputs), and computing it once per job from the 16-bit GGUF, with progress events and cancel.

``convert_many`` resolves the choice before anything is written (every value checked there, once), runs
``ensure_imatrix`` after the 16-bit intermediate exists, and hands the same file to every quantized output.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuillm.convert.errors import ConvertError
from tuillm.convert.types import OUTPUT_TYPES
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Emit, Log, Progress

if TYPE_CHECKING:  # the matrix module is imported when a job runs, not when the app starts
    from tuillm.convert.imatrix import ImatrixKey

AUTO, NONE = "auto", "none"  # as --imatrix takes them (any other value is a file)


@dataclass(frozen=True)
class ImatrixChoice:
    path: Path  # the user's file, or where the automatic one is (or will be)
    text: str | None  # the calibration text, when the matrix must be computed
    key: ImatrixKey | None  # what an automatic matrix is computed from (its sidecar, once computed)
    note: str = ""  # what the job says about it once the tools are known to be there

    def announce(self, emit: Emit) -> None:
        if self.note:
            emit(Log(self.note))

    @property
    def ready(self) -> bool:
        return self.text is None


def takes_imatrix(out_type: str) -> bool:
    """llama.cpp's quantizer uses a matrix for these (every type it writes but the float ones and q8_0)."""
    t = OUTPUT_TYPES[out_type]
    return t.quantized and not t.direct


def resolve_imatrix(src: Path, plan: Sequence[tuple[str, Path]], imatrix: str | Path | None,
                    calibration: Path | None, tensor_types: Mapping[str, str] | None) -> ImatrixChoice | None:
    """The matrix this job uses, checked now: ``imatrix`` is None (not asked), "auto", "none" or a file;
    ``calibration`` a text file for "auto" (implies it). A type (or a --tensor-type override) that llama.cpp only
    writes with a matrix implies "auto" when none was asked for (``note`` says so), and is refused with "none"."""
    from tuillm.convert import imatrix as im

    users = [t for t, _ in plan if takes_imatrix(t)]
    note = ""
    if calibration is not None and imatrix is not None and str(imatrix) != AUTO:
        raise TuillmError("--calibration is for --imatrix auto (a given --imatrix file is used as it is)")
    if imatrix is None or str(imatrix) == NONE:
        needs = [t for t in users if OUTPUT_TYPES[t].needs_imatrix or _overrides_need_it(src, t, tensor_types)]
        if imatrix is not None and needs:
            raise TuillmError(f"{', '.join(needs)}: llama.cpp writes {'it' if len(needs) == 1 else 'them'} only "
                              "with an importance matrix; leave out --imatrix none (auto is then used)")
        if imatrix is not None or (calibration is None and not needs):
            return None
        if needs:
            note = (f"{', '.join(needs)}: llama.cpp needs an importance matrix for "
                    f"{'it' if len(needs) == 1 else 'them'}; using --imatrix auto")
        imatrix = AUTO
    if not users:
        raise TuillmError("an importance matrix applies to the types llama.cpp quantizes (q4_k_m, iq4_xs...), "
                          "not to " + ", ".join(t for t, _ in plan))
    try:
        if str(imatrix) != AUTO:
            return ImatrixChoice(im.check_imatrix(Path(imatrix)), None, None)
        if calibration is not None:
            text = im.check_calibration(calibration).read_text(encoding="utf-8")
        else:
            from tuillm.convert.calibration import CALIBRATION_TEXT as text
        from tuillm.core.conversion.plan import gguf_name, hf_name

        name = hf_name(src) if src.is_dir() else gguf_name(src)
        path = im.auto_path(plan[0][1].parent, name)
        keeps = (path, path.with_name(name + im.SIDECAR))
        for _, out in plan:  # an output named so was written over the matrix (or its record), or under it
            if any(out.absolute() == k.absolute() for k in keeps):
                raise TuillmError(f"{out}: the name --imatrix auto keeps the importance matrix under; name the "
                                  "output otherwise")
        key = im.imatrix_key(src, text)
        if im.reusable(path, key):
            reuse = f"importance matrix: reusing {path.name} (same source and calibration text)"
            return ImatrixChoice(path, None, key, "; ".join(filter(None, (note, reuse))))
        return ImatrixChoice(path, text, key, note)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None


def check_tools(choice: ImatrixChoice | None, tensor_types: Mapping[str, str] | None) -> None:
    """Before anything is written: the llama.cpp tools this job will run are there (one line naming `make`)."""
    from tuillm.convert.llama_tools import find_tool

    try:
        if choice is not None or tensor_types:
            find_tool("llama-quantize")
        if choice is not None and not choice.ready:
            find_tool("llama-imatrix")
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None


def _overrides_need_it(src: Path, out_type: str, tensor_types: Mapping[str, str] | None) -> bool:
    if not tensor_types:
        return False
    from tuillm.convert.quant_rules import output_tensor_types, requires_imatrix
    from tuillm.convert.types import IMATRIX_GGML_TYPES
    from tuillm.core.conversion.plan import open_source

    if not any(q.upper() in IMATRIX_GGML_TYPES for q in tensor_types.values()):
        return False  # no need to read the source's headers
    source = open_source(src)
    types = output_tensor_types(source.tensors, out_type, n_gqa=source.n_gqa, imatrix=False,
                                tensor_types=tensor_types)
    return requires_imatrix(source.tensors, types)


def ensure_imatrix(choice: ImatrixChoice, model: Path, emit: Emit, cancel: threading.Event | None, stage: str,
                   threads: int | None) -> Path:
    """The matrix file, computed now from ``model`` (the 16-bit GGUF) when it is not ready."""
    if choice.ready:
        return choice.path
    from tuillm.convert import imatrix as im

    assert choice.text is not None and choice.key is not None
    seen = [-1, -1]

    def on_chunk(done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if [done, total] != seen and total:
            seen[:] = [done, total]
            emit(Progress(stage, done, total, f"importance matrix: chunk {done}/{total}"))

    emit(Progress(stage, 0, 1, "importance matrix: starting llama-imatrix"))
    im.compute_imatrix(model, choice.path, choice.text, threads=threads, on_chunk=on_chunk)
    im.record(choice.path, choice.key)
    emit(Log(f"wrote the importance matrix {choice.path} (reused by later conversions of this source)"))
    return choice.path
