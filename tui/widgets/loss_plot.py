"""A loss plot drawn in the terminal: train and eval loss against the step, in braille dots (2x4 per cell).

``render_plot`` is a pure function of the points and the size (tested on its own); ``LossPlot`` keeps the points
and redraws at whatever size the layout gives it. Consecutive points are joined by lines, so a curve of a few
steps still reads as a curve.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

TRAIN_STYLE = "bold cyan"
EVAL_STYLE = "bold magenta"
AXIS_STYLE = "dim"
# Dot bits of a braille cell (U+2800 + bits), indexed [row][column] within the 2x4 cell.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
Point = tuple[float, float]  # (step, loss)


def _fmt_loss(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _line(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """The dots of a straight segment (Bresenham)."""
    dots = []
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        dots.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return dots
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def render_plot(train: Sequence[Point], eval_: Sequence[Point], width: int, height: int) -> Text:
    """The plot as ``height`` lines of ``width`` cells: a legend, the curves with the loss range on the left,
    and the step range below."""
    width, height = max(width, 1), max(height, 1)
    points = [*train, *eval_]
    if not points:
        return Text("no loss yet: the plot fills as the steps finish", style=AXIS_STYLE)
    legend = Text()
    if train:
        legend.append("━ train ", TRAIN_STYLE).append(f"{_fmt_loss(train[-1][1])}  ")
    if eval_:
        legend.append("━ eval ", EVAL_STYLE).append(f"{_fmt_loss(eval_[-1][1])}")
    if height < 3:
        legend.truncate(width)
        return legend
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    first, last = min(p[0] for p in points), max(p[0] for p in points)
    span = (last - first) or 1.0
    labels = [_fmt_loss(hi), _fmt_loss((hi + lo) / 2), _fmt_loss(lo)]
    axis = max(len(s) for s in labels) + 1  # the labels and the axis line
    cols, rows = max(width - axis, 1), height - 2
    dot_w, dot_h = cols * 2, rows * 4
    # Per cell: the braille bits and the series drawn there (eval last, so it shows where the curves meet).
    bits = [[0] * cols for _ in range(rows)]
    style = [[""] * cols for _ in range(rows)]

    def to_dot(p: Point) -> tuple[int, int]:
        x = round((p[0] - first) / span * (dot_w - 1))
        y = round((hi - p[1]) / (hi - lo) * (dot_h - 1))
        return x, y

    for series, series_style in ((train, TRAIN_STYLE), (eval_, EVAL_STYLE)):
        dots = [to_dot(p) for p in series]
        path = _line(*dots[0], *dots[0]) if len(dots) == 1 else []
        for a, b in zip(dots, dots[1:], strict=False):
            path.extend(_line(*a, *b))
        for x, y in path:
            row, col = y // 4, x // 2
            bits[row][col] |= _DOTS[y % 4][x % 2]
            style[row][col] = series_style
    out = Text(no_wrap=True, overflow="crop")
    legend.truncate(width)
    out.append_text(legend)
    label_rows = {0: labels[0], rows // 2: labels[1], rows - 1: labels[2]} if rows >= 3 else {
        0: labels[0], rows - 1: labels[2]}
    for r in range(rows):
        out.append("\n")
        out.append(label_rows.get(r, "").rjust(axis - 1) + "┤" if r in label_rows else " " * (axis - 1) + "│",
                   AXIS_STYLE)
        for c in range(cols):
            out.append(chr(0x2800 + bits[r][c]) if bits[r][c] else " ", style[r][c] or None)
    left, right = f"{first:g}", f"step {last:g}"
    gap = max(cols - len(left) - len(right), 1)
    out.append("\n" + " " * (axis - 1) + "└" + left + " " * gap + right, AXIS_STYLE)
    return out


class LossPlot(Widget):
    """Train and eval loss by step; ``add_train``/``add_eval`` append a point, ``clear`` starts over."""

    DEFAULT_CSS = """
    LossPlot {
        height: 10;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.train: list[Point] = []
        self.eval: list[Point] = []

    def add_train(self, step: float, loss: float) -> None:
        self.train.append((step, loss))
        self.refresh()

    def add_eval(self, step: float, loss: float) -> None:
        self.eval.append((step, loss))
        self.refresh()

    def set_points(self, train: Sequence[Point], eval_: Sequence[Point]) -> None:
        self.train, self.eval = list(train), list(eval_)
        self.refresh()

    def clear(self) -> None:
        self.set_points([], [])

    def render(self) -> Text:
        return render_plot(self.train, self.eval, self.content_size.width, self.content_size.height)
