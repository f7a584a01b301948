"""What a quality sweep (``tuillm quants``, the Convert pane's "Quality sweep") takes: declared once, checked once.

``SWEEP_OPTIONS`` builds the CLI's flags and the pane's form; ``sweep_request`` turns their values (typed by
``Option.parse``) into a ``SweepRequest``, refusing a bad one in one line before anything is written. A refusal names
the option as the front end shows it: its flag for the CLI (``flag_name``), its label in the form (``field_name``).
Plain data and the type registry only: ``tuillm quants --help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuillm.convert.errors import ConvertError
from tuillm.convert.output import check_name
from tuillm.convert.types import OUTPUT_TYPES, check_type
from tuillm.core.conversion.imatrix_step import AUTO, NONE
from tuillm.core.errors import TuillmError
from tuillm.core.files import input_problem
from tuillm.core.llama.options import LOAD_OPTIONS
from tuillm.core.options import Option, OptionError, option_map
from tuillm.core.paths import expand_user

__all__ = ["DEFAULT_TYPES", "IMATRIX_AUTO", "IMATRIX_NONE", "KEEP_ALL", "KEEP_BEST", "KEEP_NONE", "SWEEP_OPTIONS",
           "SweepRequest", "check_types", "field_name", "flag_name", "kept_types", "sweep_request"]

# The usual ladder, best first; a type this build's registry lacks (iq4_xs before the IQ types land) is left out.
WANTED_TYPES = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "iq4_xs", "q3_k_m", "q2_k")
DEFAULT_TYPES: tuple[str, ...] = tuple(t for t in WANTED_TYPES if t in OUTPUT_TYPES)
KEEP_BEST, KEEP_ALL, KEEP_NONE = "best", "all", "none"
IMATRIX_AUTO, IMATRIX_NONE = AUTO, NONE  # the words --imatrix takes (imatrix_step reads them)

_LOAD = option_map(LOAD_OPTIONS)

SWEEP_OPTIONS: tuple[Option, ...] = (
    Option("types", str, ",".join(DEFAULT_TYPES), "the quant types to measure, comma-separated",
           metavar="TYPE[,TYPE...]", group="sweep", label="Types"),
    # The chat's own context declaration; not given, the settings' context applies (as for `tuillm models`).
    replace(_LOAD["n_ctx"], default=None, optional=True, group="sweep",
            help="the context the recommended type must fit (default: the chat's, from the settings)"),
    Option("imatrix", str, None, "importance matrix: auto (computed on the calibration text), a file, or none "
           "(default: auto where llama.cpp's tools are built, else none)", optional=True, metavar="auto|FILE|none",
           group="sweep", label="Importance matrix"),
    Option("calibration", str, None, "the text an auto importance matrix is computed on (default: the built-in one)",
           optional=True, metavar="FILE", group="sweep", label="Calibration text"),
    Option("output_dir", str, None, "folder of the kept files (default: beside the source; the first models "
           "folder for the demo or a model another app keeps)", optional=True, metavar="DIR", group="sweep",
           label="Output folder"),
    Option("keep", str, KEEP_BEST, "files kept at the end: best (the recommended type), all, none, or a type",
           metavar="best|all|none|TYPE", group="sweep", label="Keep"),
    replace(_LOAD["n_threads"], group="sweep",
            help="CPU threads for converting and for the speed test, the same for every type (auto: the chat's)"),
)
_BY_NAME = option_map(SWEEP_OPTIONS)


def flag_name(name: str) -> str:
    """An option as the CLI names it in a refusal: its flag (``--types``)."""
    return _BY_NAME[name].cli_flag


def field_name(name: str) -> str:
    """An option as a form names it in a refusal: its label (``Types``)."""
    return _BY_NAME[name].title


@dataclass(frozen=True)
class SweepRequest:
    source: Path  # an HF checkpoint folder, or a GGUF file (re-quantized)
    types: tuple[str, ...]
    output_dir: Path
    keep: str = KEEP_BEST  # KEEP_BEST | KEEP_ALL | KEEP_NONE | a type of ``types``
    n_ctx: int | None = None  # None: the settings' context
    imatrix: str | Path | None = IMATRIX_AUTO  # IMATRIX_AUTO, a file, or None
    imatrix_asked: bool = True  # False: "auto" by default, so none (with a warning) where the tools are missing
    calibration: Path | None = None
    threads: int | None = None  # None: the chat's default threads


def check_types(text: str, where: str = "--types") -> tuple[str, ...]:
    """``q8_0,q4_k_m`` -> ("q8_0", "q4_k_m"): known quantized types, each once, in the order given."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise OptionError(f"{where}: name at least one type")
    types: list[str] = []
    for name in names:
        try:
            out_type = check_type(name)
        except ConvertError as exc:
            raise OptionError(f"{where}: {exc}") from None
        if not OUTPUT_TYPES[out_type].quantized:
            raise OptionError(f"{where}: {out_type} is not a quant (the sweep measures against the 16-bit model)")
        if out_type not in types:
            types.append(out_type)
    return tuple(types)


def _existing_file(text: str, where: str) -> Path:
    path = expand_user(text)
    try:
        if path.is_file():
            return path
        problem = "not a regular file" if path.exists() else "no such file"
    except OSError as exc:  # a name too long: pathlib's is_file() and exists() pass that on
        problem = f"cannot read it ({exc.strerror or exc})"
    raise TuillmError(f"{where}: {path}: {problem}")


def default_output_dir(src: Path, models_folder: Path | None, where: str = "--output-dir") -> Path:
    """Beside the source, unless another app keeps that folder (the demo's package, the HF cache, Ollama, LM
    Studio): then the first models folder. A GGUF written beside the demo became the demo (the package's first)."""
    from tuillm.core.models.catalog import kept_by

    keeper = kept_by(src)
    if keeper is None:
        return src.absolute().parent
    if models_folder is None:
        raise OptionError(f"{where}: {src.name} is kept by {keeper} and no models folder is set; name a folder "
                          "for the quantized files")
    return models_folder


def sweep_request(source: str | Path, values: Mapping[str, Any], models_folder: Path | None = None, *,
                  name_of: Callable[[str], str] = flag_name) -> SweepRequest:
    """The request from the options' values (already parsed by their declarations); one-line errors, each naming
    its option by ``name_of`` (``flag_name``, ``field_name``). ``models_folder``: where the files go when no folder
    is given and another app keeps the source's."""
    src = expand_user(source)
    problem = input_problem(src)
    if problem:
        raise TuillmError(f"{src}: {problem}")
    if not src.is_dir() and src.suffix.lower() != ".gguf":
        raise TuillmError(f"{src}: not a GGUF file or an HF checkpoint folder")
    types = check_types(values.get("types") or ",".join(DEFAULT_TYPES), name_of("types"))
    keep = (values.get("keep") or KEEP_BEST).strip().lower()
    if keep not in (KEEP_BEST, KEEP_ALL, KEEP_NONE):
        try:
            keep = check_type(keep)
        except ConvertError:
            keep = ""
        if keep not in types:
            raise OptionError(f"{name_of('keep')}: must be best, all, none or one of the types ({', '.join(types)}), "
                              f"not {values.get('keep')!r}")
    asked = bool(values.get("imatrix")) or values.get("calibration") is not None
    imatrix_text = (values.get("imatrix") or IMATRIX_AUTO).strip()
    imatrix: str | Path | None = {IMATRIX_AUTO: IMATRIX_AUTO, IMATRIX_NONE: None}.get(imatrix_text.lower(), "")
    if imatrix == "":
        imatrix = _existing_file(imatrix_text, name_of("imatrix"))
    from tuillm.core.conversion.imatrix_step import takes_imatrix

    if not asked and not any(takes_imatrix(t) for t in types):
        imatrix = None  # the default "auto", and no type here takes a matrix (q8_0 alone): the job would refuse it
    calibration = values.get("calibration")
    if calibration is not None and imatrix != IMATRIX_AUTO:
        raise OptionError(f"{name_of('calibration')}: only with {name_of('imatrix')} set to auto (it is the text the "
                          "matrix is computed on)")
    out_text = values.get("output_dir")
    output_dir = expand_user(out_text) if out_text else default_output_dir(src, models_folder,
                                                                           name_of("output_dir"))
    try:
        check_name(output_dir)
    except ConvertError as exc:
        raise TuillmError(f"{name_of('output_dir')}: {exc}") from None
    if output_dir.exists() and not output_dir.is_dir():
        raise TuillmError(f"{name_of('output_dir')}: {output_dir} is not a folder")
    return SweepRequest(src, types, output_dir, keep=keep, n_ctx=values.get("n_ctx"), imatrix=imatrix,
                        imatrix_asked=asked, threads=values.get("n_threads"),
                        calibration=_existing_file(calibration, name_of("calibration")) if calibration else None)


def kept_types(keep: str, types: tuple[str, ...], recommended: str | None) -> tuple[str, ...]:
    """The types whose files stay at the end."""
    if keep == KEEP_ALL:
        return types
    if keep == KEEP_NONE:
        return ()
    if keep == KEEP_BEST:
        return (recommended,) if recommended else ()
    return (keep,)
