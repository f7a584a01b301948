"""The end of a streaming reply, not yet formatted: drawn as plain text below the reply's Markdown.

Appending every draw to Textual's Markdown re-parsed the last block, laid out the whole conversation and scrolled it
by the new line, re-rendering every message in view: ~13 ms of the event loop's CPU per draw, and its GIL use slowed
the decoding thread by ~13%. So a streaming reply's end is drawn here: its wrapped lines are cached, a draw repaints
only the rows that changed, and its height grows in steps of ``STEP`` rows. When the tail would have to grow, the
Markdown blocks finished by then (``finished_length``) go to the Markdown in one append. So the conversation is laid
out and scrolled about once a step, instead of on every draw or every paragraph.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

STEP = 8  # rows the tail's height grows by at a time
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")


def finished_length(text: str) -> int:
    """The length of ``text``'s start made of finished Markdown blocks: up to the last blank line outside a fenced
    code block, or the end of a closing fence line. A line without its newline is still being written."""
    end = pos = 0
    fence = ""  # the opening fence of the code block ``pos`` is in
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        pos += len(line)
        match = _FENCE.match(line)
        if not fence:
            if match:
                fence = match.group(1)
            elif not line.strip():
                end = pos
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line[match.end():].strip():
            fence = ""
            end = pos
    return end


def _fence_body(text: str) -> str | None:
    """The code of a fenced block in progress (``text`` is one: its fence and code so far), else None."""
    if not _FENCE.match(text) or finished_length(text):
        return None
    _, newline, body = text.partition("\n")
    return body if newline else ""


class StreamTail(Widget):
    """The end of a streaming reply, not yet in the Markdown, as plain text (code in progress as a code block)."""

    DEFAULT_CSS = """
    StreamTail {
        height: auto;
    }
    StreamTail.-code {  /* as Textual's MarkdownFence */
        background: black 10%;
        &:light {
            background: white 30%;
        }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.text = ""  # the reply's text not yet in the Markdown, as streamed (a fence included)
        self._shown = ""  # what is drawn: the text, or the code of a fenced block
        self._strips: list[Strip] = []  # the wrapped rows of every line of _shown but the last
        self._last: list[Strip] = []  # the wrapped rows of _shown's last line
        self._wrapped = 0  # the length of _shown whose complete lines are in _strips
        self._width = 0  # the width they were wrapped at
        self._height = self.styles.height = STEP  # rows, a multiple of STEP (the first step: no layout for it)
        self._drawn = 0  # rows drawn by the last show
        self._changed = 0  # the first row changed since the last show

    def overflows(self, text: str) -> bool:
        """Whether ``text`` needs more rows than the tail has (wrapping it for the ``show`` that follows)."""
        self._take(text)
        return len(self._strips) + len(self._last) > self._height

    def show(self, text: str) -> None:
        """Draw ``text`` (the reply's end): only the rows that changed are repainted."""
        self._take(text)
        before, first = self._drawn, self._changed
        rows = self._drawn = self._changed = len(self._strips) + len(self._last)
        if self._fit(rows):
            return  # the height changed: the whole tail is laid out and drawn again
        width = self.size.width
        if width and max(rows, before) > first:
            self.refresh(Region(0, first, width, max(rows, before) - first))

    def _take(self, text: str) -> None:
        """Hold and wrap ``text``, noting the first row that changed."""
        self.text = text
        code = _fence_body(text)
        self.set_class(code is not None, "-code")
        self._changed = min(self._changed, self._wrap(text if code is None else code))

    def _fit(self, rows: int) -> bool:
        """Grow (or shrink) the height to the step holding ``rows``; True if it changed."""
        height = max(STEP, -(-rows // STEP) * STEP)
        if height == self._height:
            return False
        self._height = self.styles.height = height
        return True

    def _wrap(self, shown: str) -> int:
        """Wrap what changed of ``shown``; returns the first row that changed."""
        width = self.content_size.width
        if width != self._width or not shown.startswith(self._shown[:self._wrapped]):
            self._strips, self._wrapped, self._width = [], 0, width  # a new block, or a new width
        first = len(self._strips)
        done = shown.rfind("\n") + 1  # the complete lines end there
        if done > self._wrapped:
            for line in shown[self._wrapped:done - 1].split("\n"):
                self._strips.extend(self._rows(line, width))
            self._wrapped = done
        self._last = self._rows(shown[done:], width)
        self._shown = shown
        return first

    def _rows(self, line: str, width: int) -> list[Strip]:
        if width <= 0:
            return []
        console = self.app.console
        return [Strip(wrapped.render(console), wrapped.cell_len)
                for wrapped in Text(line.expandtabs(4)).wrap(console, width, overflow="fold")]

    def on_resize(self) -> None:
        if self.content_size.width != self._width:
            self.show(self.text)  # wrapped again at the new width

    def render_line(self, y: int) -> Strip:
        rows = len(self._strips)
        strip = self._strips[y] if y < rows else self._last[y - rows] if y - rows < len(self._last) else Strip([])
        return strip.extend_cell_length(self.content_size.width).apply_style(self.rich_style)

