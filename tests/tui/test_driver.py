"""The app's output after its terminal hangs up: what fails is dropped, once said (tui.driver)."""

from __future__ import annotations

import errno
import io

from tuillm.tui.driver import TerminalOutput


class HungUp(io.StringIO):
    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.fail_after = fail_after

    def write(self, text: str) -> int:
        if self.fail_after == 0:
            raise OSError(errno.EIO, "Input/output error")
        self.fail_after -= 1
        return super().write(text)


def test_writes_reach_the_terminal_until_one_fails_then_none_is_tried() -> None:
    terminal = HungUp(fail_after=2)
    gone: list[bool] = []
    output = TerminalOutput(terminal, lambda: gone.append(True))
    for frame in ("a", "b", "c", "d"):
        assert output.write(frame) == 1  # Textual's writer thread must never see the error
        output.flush()
    assert terminal.getvalue() == "ab"
    assert output.gone and gone == [True]  # said once, not on every later frame
    assert terminal.fail_after == 0  # nothing written after the failure reached the terminal


def test_a_closed_stream_is_gone_too() -> None:
    stream = io.StringIO()
    stream.close()
    gone: list[bool] = []
    assert TerminalOutput(stream, lambda: gone.append(True)).write("frame") == 5
    assert gone == [True]
