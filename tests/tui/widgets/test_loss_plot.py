"""The terminal loss plot: known series drawn at a known size, read back cell by cell."""

from __future__ import annotations

import math

from textual.app import App, ComposeResult

from tests.tui.app_helpers import run_async
from tuillm.tui.widgets.loss_plot import EVAL_STYLE, TRAIN_STYLE, LossPlot, render_plot


def dots(char: str) -> int:
    """How many braille dots a cell has lit."""
    return bin(ord(char) - 0x2800).count("1") if "\u2800" <= char <= "\u28ff" else 0


def styled_cells(text, style: str) -> set[tuple[int, int]]:
    """(row, column) of every cell drawn in ``style``."""
    lines = text.plain.split("\n")
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    cells = set()
    for span in text.spans:
        if span.style != style:
            continue
        for offset in range(span.start, span.end):
            row = max(i for i, s in enumerate(starts) if s <= offset)
            if dots(text.plain[offset]):
                cells.add((row, offset - starts[row]))
    return cells


def test_a_falling_train_curve_and_an_eval_curve() -> None:
    train = [(step, 3.0 * math.exp(-step / 10) + 0.5) for step in range(1, 41)]
    eval_ = [(step, 3.0 * math.exp(-step / 10) + 0.9) for step in range(10, 41, 10)]
    text = render_plot(train, eval_, 60, 12)
    lines = text.plain.split("\n")
    assert len(lines) == 12 and all(len(line) <= 60 for line in lines)
    assert len(lines[1]) == 60  # the plot rows fill the width
    # Legend: both series with their last value.
    assert lines[0].startswith("━ train 0.555") and "━ eval 0.955" in lines[0]
    # Loss axis: max at the top, min at the bottom, the middle between; the step range below.
    top, bottom = max(p[1] for p in train + eval_), min(p[1] for p in train + eval_)
    assert lines[1].lstrip().startswith(f"{top:.3g}┤") and lines[10].lstrip().startswith(f"{bottom:.3g}┤")
    assert f"{(top + bottom) / 2:.3g}┤" in lines[1 + 10 // 2]
    assert lines[11].split("└")[1].startswith("1 ") and lines[11].endswith("step 40")
    # Both series are drawn, in their colours; train starts top-left and ends bottom-right.
    train_cells, eval_cells = styled_cells(text, TRAIN_STYLE), styled_cells(text, EVAL_STYLE)
    assert len(train_cells) > 40 and len(eval_cells) > 10
    first_col = min(c for _, c in train_cells)
    last_col = max(c for _, c in train_cells)
    assert min(r for r, c in train_cells if c == first_col) == 1  # the first loss is the top of the range
    assert max(r for r, c in train_cells if c == last_col) == 10
    # The curve falls: the mean row of its cells goes down the screen from left to right.
    left = [r for r, c in train_cells if c < first_col + 10]
    right = [r for r, c in train_cells if c > last_col - 10]
    assert sum(left) / len(left) < sum(right) / len(right)
    # Eval starts at step 10: a quarter of the way in, not at the left edge.
    assert min(c for _, c in eval_cells) > first_col + 10


def test_small_and_degenerate_inputs() -> None:
    assert "no loss yet" in render_plot([], [], 40, 8).plain
    one = render_plot([(5, 2.0)], [], 30, 6)
    assert one.plain.startswith("━ train 2") and sum(dots(ch) for ch in one.plain) == 1
    flat = render_plot([(1, 1.0), (2, 1.0), (3, 1.0)], [], 30, 6).plain.split("\n")
    assert "1.5┤" in flat[1] and "0.5┤" in flat[4]  # a flat series is centred in a unit range
    assert render_plot([(1, 2.0), (2, 1.0)], [], 30, 2).plain.startswith("━ train 1")  # legend only


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LossPlot()


@run_async
async def test_the_widget_redraws_at_its_size() -> None:
    app = PlotApp()
    async with app.run_test(size=(50, 12)) as pilot:
        plot = app.query_one(LossPlot)
        plot.styles.height = 8
        for step in range(1, 11):
            plot.add_train(step, 3.0 - step * 0.2)
        plot.add_eval(10, 1.3)
        await pilot.pause()
        lines = plot.render().plain.split("\n")
        assert len(lines) == 8 and len(lines[1]) == 50 and lines[-1].endswith("step 10")
        await pilot.resize_terminal(70, 12)
        await pilot.pause()
        assert len(plot.render().plain.split("\n")[1]) == 70
        plot.clear()
        assert "no loss yet" in plot.render().plain
