"""The conversion job: progress events, cancel -> Cancelled with nothing left, converter errors -> TuillmError."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.core.convert_job import convert_checkpoint, quantize_file
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


def test_errors_become_tuillm_errors(tmp_path: Path) -> None:
    with pytest.raises(TuillmError, match="no config.json"):
        convert_checkpoint(tmp_path, tmp_path / "t.gguf")
    with pytest.raises(TuillmError, match="unknown output type"):
        quantize_file(tmp_path / "in.gguf", tmp_path / "t.gguf", "q9_z")
    assert list(tmp_path.iterdir()) == []
