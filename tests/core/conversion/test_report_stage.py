"""Convert's progress: the quality report is a stage of its own that moves (one unit per model it runs), and a
step's ETA is shown only once its rate means something."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert.progress import ConvertProgress
from tuillm.core.conversion.job import REPORT_STAGE, convert_checkpoint, convert_many, progress_message
from tuillm.core.events import Event, Progress

MB = 10**6


def _at(seconds: float, done: int, total: int = 100 * MB) -> ConvertProgress:
    return ConvertProgress("quantize", 1, 10, done, total, seconds)


def test_the_eta_waits_until_it_means_something() -> None:
    # The first tensor of a step, written fast: extrapolated, it read hours.
    assert "ETA" not in progress_message(_at(0.01, MB // 10))
    assert "ETA" not in progress_message(_at(1.0, 50 * MB))  # too early, however far
    assert "ETA" not in progress_message(_at(30.0, MB))  # too little done, however long
    assert progress_message(_at(4.0, 50 * MB)) == "1/10 tensors, 12 MB/s, ETA 0:04"
    assert "ETA" not in progress_message(_at(8.0, 100 * MB))  # finished: nothing left to wait for


@pytest.fixture(scope="module")
def f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = tiny_random_checkpoint("qwen2", tmp_path_factory.mktemp("tiny"))
    return convert_checkpoint(tiny, tmp_path_factory.mktemp("f16") / "src-F16.gguf", "f16")


def test_the_report_is_its_own_stage(f16: Path, tmp_path: Path) -> None:
    events: list[Event] = []
    convert_many(f16, [("q8_0", tmp_path / "a.gguf"), ("q4_0", tmp_path / "b.gguf")], emit=events.append,
                 report=True)
    progress = [e for e in events if isinstance(e, Progress)]
    stages = list(dict.fromkeys(e.stage for e in progress))
    assert stages == ["1/2 q8_0", "2/2 q4_0", REPORT_STAGE]  # after the files, not mixed into them
    report = [e for e in progress if e.stage == REPORT_STAGE]
    # The input (the reference), then each output: the bar moves from 0 to the end, never back.
    assert [(e.done, e.total) for e in report] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [e.message for e in report] == ["the original on the built-in text", "a.gguf (1/2)", "b.gguf (2/2)",
                                           "2 reports done"]
