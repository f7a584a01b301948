"""A size-vs-quality scatter in text: x = bits per weight, y = mean KL divergence (log scale), one labelled point
per quant type, the recommended one marked. No plotting dependency: ``plot_lines`` draws into a character grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

POINT, CHOSEN = "●", "◆"
_Y_AXIS = 9  # columns for the y labels ("1e-03 ┤")


@dataclass(frozen=True)
class PlotPoint:
    label: str
    x: float  # bits per weight
    y: float  # mean KL divergence (> 0 to be drawn on the log scale; 0 is drawn at the floor)
    chosen: bool = False


def _log(y: float, floor: float) -> float:
    return math.log10(max(y, floor))


def plot_lines(points: list[PlotPoint], width: int, height: int) -> list[tuple[str, list[tuple[int, int]]]]:
    """The plot as ``height`` lines of ``width`` characters, each with the (start, end) spans of the chosen point
    and its label (to style). Axes: KL on the left (log10), bits per weight along the bottom."""
    width, height = max(width, _Y_AXIS + 12), max(height, 4)
    plot_w, plot_h = width - _Y_AXIS, height - 2  # the last two lines: the x axis and its labels
    grid = [[" "] * width for _ in range(height)]
    spans: list[list[tuple[int, int]]] = [[] for _ in range(height)]
    if not points:
        return [("no figures yet".center(width), [])] + [(" " * width, []) for _ in range(height - 1)]
    positive = [p.y for p in points if p.y > 0]
    floor = min(positive) / 10 if positive else 1e-6
    lo_y, hi_y = min(_log(p.y, floor) for p in points), max(_log(p.y, floor) for p in points)
    lo_x, hi_x = min(p.x for p in points), max(p.x for p in points)
    if hi_y - lo_y < 1e-9:
        lo_y, hi_y = lo_y - 0.5, hi_y + 0.5
    if hi_x - lo_x < 1e-9:
        lo_x, hi_x = lo_x - 0.5, hi_x + 0.5
    for row in range(plot_h):  # y labels at the top, middle and bottom rows
        grid[row][_Y_AXIS - 1] = "┤" if row in (0, plot_h // 2, plot_h - 1) else "│"
        if row in (0, plot_h // 2, plot_h - 1):
            value = 10 ** (hi_y - (hi_y - lo_y) * row / max(plot_h - 1, 1))
            _put(grid[row], 0, f"{value:.0e}".rjust(_Y_AXIS - 2))
    _put(grid[plot_h], _Y_AXIS - 1, "└" + "─" * (plot_w - 1))
    _put(grid[plot_h + 1], _Y_AXIS, f"{lo_x:.1f}")
    right = f"{hi_x:.1f} bits/weight"
    _put(grid[plot_h + 1], width - len(right), right)
    taken = [[c != " " for c in line] for line in grid]
    for p in sorted(points, key=lambda p: not p.chosen):  # the chosen point first: its label always has room
        col = _Y_AXIS + round((p.x - lo_x) / (hi_x - lo_x) * (plot_w - 2))
        row = round((hi_y - _log(p.y, floor)) / (hi_y - lo_y) * (plot_h - 1))
        marker = CHOSEN if p.chosen else POINT
        _put(grid[row], col, marker)
        taken[row][col] = True
        if p.chosen:
            spans[row].append((col, col + 1))
        # Beside the point, else on the line above or below it; with no room at all the label is left out (the
        # table names every type).
        for label_row in (row, row - 1, row + 1):
            if 0 <= label_row < plot_h and (start := _place(taken[label_row], col, len(p.label), width)) is not None:
                _put(grid[label_row], start, p.label)
                for i in range(start, start + len(p.label)):
                    taken[label_row][i] = True
                if p.chosen:
                    spans[label_row].append((start, start + len(p.label)))
                break
    return [("".join(line), spans[i]) for i, line in enumerate(grid)]


def _place(taken: list[bool], col: int, n: int, width: int) -> int | None:
    """Where a label of ``n`` characters goes beside the point at ``col``: right of it, else left of it, if free."""
    for start in (col + 1, col - n):
        if _Y_AXIS <= start and start + n <= width and not any(taken[start: start + n]):
            return start
    return None


def _put(line: list[str], start: int, text: str) -> None:
    for i, ch in enumerate(text):
        if 0 <= start + i < len(line):
            line[start + i] = ch


class KLPlot(Widget):
    """The scatter of ``points``, redrawn at the widget's size."""

    DEFAULT_CSS = """
    KLPlot { height: 8; width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.points: list[PlotPoint] = []

    def show(self, points: list[PlotPoint]) -> None:
        self.points = points
        self.refresh()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        lines = plot_lines(self.points, self.size.width, self.size.height)
        for i, (line, spans) in enumerate(lines):
            segment = Text(line)
            for start, end in spans:
                segment.stylize("bold reverse", start, end)
            text.append_text(segment)
            if i < len(lines) - 1:
                text.append("\n")
        return text
