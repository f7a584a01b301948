from __future__ import annotations

import io

from tuillm.core.events import Log, Metric, Progress
from tuillm.tui.cli.progress import CliRenderer


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_output_is_one_line_per_tenth() -> None:
    out = io.StringIO()
    render = CliRenderer(out)
    for i in range(101):
        render(Progress("convert", i, 100, f"{i} tensors"))
    render(Log("done"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "convert: 0% 0 tensors"
    assert lines[-2] == "convert: 100% 100 tensors"
    assert lines[-1] == "done"
    assert len(lines) == 12  # 0%, 10% ... 100%, and the log line


def test_tty_redraws_one_line_and_ends_it() -> None:
    out = FakeTTY()
    render = CliRenderer(out)
    render(Progress("quantize", 1, 4))
    render(Progress("quantize", 4, 4, "ok"))
    render(Log("disk almost full", "warning"))
    text = out.getvalue()
    assert "\r\x1b[2K" in text and "100.0%" in text
    assert text.endswith("warning: disk almost full\n")


def test_quiet_keeps_only_problems() -> None:
    out = io.StringIO()
    render = CliRenderer(out, quiet=True)
    render(Progress("x", 1, 2))
    render(Metric("loss", 1.5, 3))
    render(Log("hello"))
    render(Log("broken", "error"))
    assert out.getvalue() == "error: broken\n"
