"""The conversion job: progress events, cancel -> Cancelled with nothing left, converter errors -> TuillmError."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.gguf_header import read_gguf_header
from tuillm.core.conversion.job import convert_checkpoint, convert_many
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Event, Log, Progress


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("qwen2", tmp_path_factory.mktemp("tiny"))


def test_progress_events_reach_the_end(tiny: Path, tmp_path: Path) -> None:
    events: list[Event] = []
    out = convert_checkpoint(tiny, tmp_path / "t.gguf", "q8_0", emit=events.append)
    assert out.is_file()
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].done == 0 and progress[-1].fraction == 1.0
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert "MB/s" in progress[-1].message
    assert any(isinstance(e, Log) and "wrote" in e.message for e in events)


def test_cancel_leaves_nothing(tiny: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    seen: list[Event] = []

    def emit(event: Event) -> None:
        seen.append(event)
        if isinstance(event, Progress) and event.done >= 3:
            cancel.set()  # the user pressed cancel a few tensors in

    with pytest.raises(Cancelled):
        convert_checkpoint(tiny, tmp_path / "t.gguf", "f16", emit=emit, cancel=cancel)
    assert list(tmp_path.iterdir()) == []
    assert max(e.done for e in seen if isinstance(e, Progress)) < max(e.total for e in seen if isinstance(e, Progress))


def test_cancel_during_k_quant_removes_intermediate(tiny: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        convert_checkpoint(tiny, tmp_path / "t.gguf", "q4_k_m", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_errors_become_tuillm_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(TuillmError, match="no config.json"):
        convert_checkpoint(tmp_path, tmp_path / "t.gguf")
    with pytest.raises(TuillmError, match="no such file"):
        convert_many(tmp_path / "in.gguf", [("q8_0", tmp_path / "t.gguf")])
    with pytest.raises(TuillmError, match="unknown output type"):
        convert_many(tiny, [("q9_z", tmp_path / "t.gguf")])
    assert list(tmp_path.iterdir()) == []


# --- several outputs from one source -------------------------------------------------------------------------------


def _file_type(path: Path) -> int:
    return int(read_gguf_header(path).fields["general.file_type"])


def _steps(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Log) and e.message.startswith("step ")]


def test_many_types_share_one_intermediate(tiny: Path, tmp_path: Path) -> None:
    events: list[Event] = []
    written: list[Path] = []
    outputs = [("q4_k_m", tmp_path / "m-Q4_K_M.gguf"), ("q4_0", tmp_path / "m-Q4_0.gguf"),
               ("q8_0", tmp_path / "m-Q8_0.gguf")]
    results = convert_many(tiny, outputs, emit=events.append, on_written=lambda r: written.append(r.path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-Q4_0.gguf", "m-Q4_K_M.gguf", "m-Q8_0.gguf"]
    assert sorted(written) == sorted(p for _, p in outputs) == sorted(r.path for r in results)
    # One 16-bit intermediate (tiny is float32 -> f16) for both llama.cpp types; q8_0 is written directly.
    steps = _steps(events)
    assert len(steps) == 4 and steps[0].startswith("step 1/4 f16 (temp)")
    assert {_file_type(p) for _, p in outputs} == {15, 2, 7}  # Q4_K_M, Q4_0, Q8_0
    assert all(r.size == r.path.stat().st_size and r.report == [] for r in results)
    progress = [e for e in events if isinstance(e, Progress)]
    assert {p.stage for p in progress} == {"1/4 f16 (temp)", "2/4 q8_0", "3/4 q4_k_m", "4/4 q4_0"}
    assert all("tensors" in p.message and "MB/s" in p.message for p in progress)


def test_requested_f16_is_the_intermediate(tiny: Path, tmp_path: Path) -> None:
    events: list[Event] = []
    convert_many(tiny, [("q4_k_m", tmp_path / "a.gguf"), ("f16", tmp_path / "b.gguf")], emit=events.append)
    assert _steps(events) == ["step 1/2 f16: b.gguf", "step 2/2 q4_k_m: a.gguf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf"]
    assert _file_type(tmp_path / "b.gguf") == 1


def test_cancel_keeps_completed_outputs_only(tiny: Path, tmp_path: Path) -> None:
    """Cancelled while the second output is written: the first stays, the second goes."""
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and event.stage.startswith("2/2") and event.done >= 2:
            cancel.set()

    written: list[Path] = []
    with pytest.raises(Cancelled):
        convert_many(tiny, [("q8_0", tmp_path / "a.gguf"), ("bf16", tmp_path / "b.gguf")], emit=emit,
                     cancel=cancel, on_written=lambda r: written.append(r.path))
    assert [p.name for p in written] == ["a.gguf"] and [p.name for p in tmp_path.iterdir()] == ["a.gguf"]


def test_cancel_while_llama_cpp_quantizes(demo_gguf: Path, tmp_path: Path) -> None:
    """The quantizer runs in a child process: a cancel while it works kills it and leaves nothing.

    The demo GGUF (94 MB) keeps the child busy for seconds, well past its first poll (0.2 s)."""
    cancel = threading.Event()
    seen: list[Progress] = []

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and "q4_k_m" in event.stage:
            seen.append(event)
            if len(seen) == 2:  # the first poll of the running child (the first event comes before it starts)
                cancel.set()

    with pytest.raises(Cancelled):
        convert_many(demo_gguf, [("q4_k_m", tmp_path / "a.gguf")], emit=emit, cancel=cancel)
    assert len(seen) == 2 and seen[-1].done < seen[-1].total
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_requantize_several_with_report(tiny: Path, tmp_path: Path) -> None:
    f16 = convert_checkpoint(tiny, tmp_path / "src-F16.gguf", "f16")
    out = tmp_path / "out"
    out.mkdir()
    events: list[Event] = []
    results = convert_many(f16, [("q8_0", out / "a.gguf"), ("q4_0", out / "b.gguf")], emit=events.append,
                           report=True)
    assert [r.out_type for r in results] == ["q8_0", "q4_0"]
    assert sorted(p.name for p in out.iterdir()) == ["a.gguf", "b.gguf"]
    for r in results:
        assert r.report[0] == f"{r.path.name} against the input src-F16.gguf:"
        assert r.report[1].startswith("top-1 agreement") and "perplexity" in r.report[3]
    assert _file_type(out / "b.gguf") == 2


@pytest.mark.slow
def test_report_reuses_the_intermediate(tiny: Path, tmp_path: Path) -> None:
    """q8_0 alone is written directly, but its report needs the f16 baseline: made once, removed after."""
    results = convert_many(tiny, [("q8_0", tmp_path / "a.gguf")], report=True)
    assert [p.name for p in tmp_path.iterdir()] == ["a.gguf"]
    report = results[0].report
    assert report[0] == "a.gguf against the original (transformers):"
    assert any(line.startswith("perplexity vs f16") for line in report)
    top1 = float(report[1].split()[2].rstrip("%"))
    assert top1 > 50  # q8_0 of a random model still mostly agrees with it


def test_many_bad_input(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(TuillmError, match="at least one"):
        convert_many(tiny, [])
    with pytest.raises(TuillmError, match="named for two outputs"):
        convert_many(tiny, [("q8_0", tmp_path / "a.gguf"), ("q4_0", tmp_path / "a.gguf")])
    with pytest.raises(TuillmError, match="unknown output type"):
        convert_many(tiny, [("q9", tmp_path / "a.gguf")])
    with pytest.raises(TuillmError, match="no such file"):
        convert_many(tmp_path / "missing", [("q8_0", tmp_path / "a.gguf")])
    assert list(tmp_path.iterdir()) == []
