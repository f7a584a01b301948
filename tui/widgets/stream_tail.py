"""The end of a streaming reply, not yet in the Markdown: drawn line by line below the reply's Markdown.

Appending every draw to Textual's Markdown re-parsed the last block, laid out the whole conversation and scrolled it
by the new line, re-rendering every message in view: ~13 ms of the event loop's CPU per draw, and its GIL use slowed
the decoding thread by ~13%. So a streaming reply's end is drawn here: its wrapped lines are cached, a draw repaints
only the rows that changed, and its height grows in steps of ``STEP`` rows. When the tail would have to grow, the
Markdown blocks finished by then (``finished_length``) go to the Markdown in one append. So the conversation is laid
out and scrolled about once a step, instead of on every draw or every paragraph.

The tail's lines are styled as the Markdown will show them, as far as one line tells (``styled_line``): a heading's
text in bold, a bullet as the Markdown's bullet, a quote's marker as a bar, and the bold, italic and code spans that
are closed, without their markers. So text keeps its look, and nearly its wrapping, when it moves to the Markdown.
"""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

STEP = 8  # rows the tail's height grows by at a time
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+")
_BULLET = re.compile(r"([ \t]*)[-*+][ \t]+")
_QUOTE = re.compile(r" {0,3}>[ \t]?")
# Closed spans only: a marker not closed yet is being written, and stays as written until it is.
_SPAN = re.compile(r"(?<!`)(?P<code>`+)(?!`)(?P<code_text>.+?)(?<!`)(?P=code)(?!`)"
                   r"|\*\*(?P<strong>\S(?:.*?\S)?)\*\*|__(?P<strong2>\S(?:.*?\S)?)__"
                   r"|\*(?P<em>\S(?:.*?\S)?)\*|(?<!\w)_(?P<em2>\S(?:.*?\S)?)_(?!\w)")
BULLET = "• "  # as Textual's Markdown draws the first level
QUOTE = "▌ "
BOLD, ITALIC = Style(bold=True), Style(italic=True)


def styled_line(line: str, code: Style) -> Text:
    """One line of Markdown being written, styled as the Markdown will show it (``code``: inline code's style)."""
    text = Text()
    if heading := _HEADING.match(line):
        text.append(_spans(line[heading.end():], code))
        text.stylize(BOLD)
        return text
    if bullet := _BULLET.match(line):
        text.append(bullet.group(1) + BULLET)
        line = line[bullet.end():]
    elif quote := _QUOTE.match(line):
        text.append(QUOTE, Style(dim=True))
        line = line[quote.end():]
    text.append(_spans(line, code))
    return text


def _spans(line: str, code: Style) -> Text:
    text = Text()
    at = 0
    for span in _SPAN.finditer(line):
        text.append(line[at:span.start()])
        if span["code"]:
            text.append(span["code_text"], code)
        elif (strong := span["strong"] or span["strong2"]) is not None:
            text.append(strong, BOLD)
        else:
            text.append(span["em"] or span["em2"], ITALIC)
        at = span.end()
    text.append(line[at:])
    return text


def fence_after(fence: str, line: str) -> str:
    """The opening fence of the code block open after ``line`` ("": none), ``fence`` being the one open before it.
    Only the same fence, as long or longer, with nothing after it, closes a block."""
    match = _FENCE.match(line)
    if not fence:
        return match.group(1) if match else ""
    if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
            and not line[match.end():].strip():
        return ""
    return fence


def finished_length(text: str) -> int:
    """The length of ``text``'s start made of finished Markdown blocks: up to the last blank line outside a fenced
    code block, or the end of a closing fence line. A line without its newline is still being written."""
    end = pos = 0
    fence = ""  # the opening fence of the code block ``pos`` is in
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        pos += len(line)
        before, fence = fence, fence_after(fence, line)
        if (not before and not fence and not line.strip()) or (before and not fence):
            end = pos
    return end


def _fence_body(text: str) -> str | None:
    """The code of a fenced block in progress (``text`` is one: its fence and code so far), else None."""
    if not _FENCE.match(text) or finished_length(text):
        return None
    _, newline, body = text.partition("\n")
    return body if newline else ""


class StreamTail(Widget):
    """The end of a streaming reply, not yet in the Markdown, its lines styled one by one (code in progress as a
    code block)."""

    COMPONENT_CLASSES = {"stream-tail--code-inline"}
    DEFAULT_CSS = """
    StreamTail {
        height: auto;
        &:dark > .stream-tail--code-inline {  /* as Textual's Markdown draws inline code */
            background: $warning 10%;
            color: $text-warning 95%;
        }
        &:light > .stream-tail--code-inline {
            background: $error 5%;
            color: $text-error 95%;
        }
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
        self._styled = True  # whether they were styled as Markdown (not code)
        self._fence = ""  # the fence of the code block open after the lines in _strips
        self._height = self.styles.height = STEP  # rows, a multiple of STEP (the first step: no layout for it)
        self._drawn = 0  # rows drawn by the last show
        self._changed = 0  # the first row changed since the last show
        self._style = Style()  # the rows' style, read once a frame (rich_style walks the ancestors)

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
        self._changed = min(self._changed, self._wrap(text if code is None else code, styled=code is None))

    def _fit(self, rows: int) -> bool:
        """Grow (or shrink) the height to the step holding ``rows``; True if it changed."""
        height = max(STEP, -(-rows // STEP) * STEP)
        if height == self._height:
            return False
        self._height = self.styles.height = height
        return True

    def _wrap(self, shown: str, *, styled: bool) -> int:
        """Wrap what changed of ``shown`` (its lines ``styled`` as Markdown, or as written: code); returns the first
        row that changed."""
        width = self.content_size.width
        if width != self._width or styled != self._styled or not shown.startswith(self._shown[:self._wrapped]):
            self._strips, self._wrapped, self._width = [], 0, width  # a new block, or a new width
            self._fence = ""
        first = len(self._strips)
        done = shown.rfind("\n") + 1  # the complete lines end there
        if done > self._wrapped:
            for line in shown[self._wrapped:done - 1].split("\n"):
                # A fenced block that ended in the tail (more text came after it): its lines as written.
                fence, self._fence = self._fence, fence_after(self._fence, line)
                self._strips.extend(self._rows(line, width, styled and not fence and not self._fence))
            self._wrapped = done
        last = shown[done:]
        self._last = self._rows(last, width, styled and not self._fence and not _FENCE.match(last))
        self._shown, self._styled = shown, styled
        return first

    def _rows(self, line: str, width: int, styled: bool) -> list[Strip]:
        if width <= 0:
            return []
        console = self.app.console
        line = line.expandtabs(4)
        text = styled_line(line, self.get_component_rich_style("stream-tail--code-inline")) if styled else Text(line)
        return [Strip(wrapped.render(console), wrapped.cell_len)
                for wrapped in text.wrap(console, width, overflow="fold")]

    def on_resize(self) -> None:
        if self.content_size.width != self._width:
            self.show(self.text)  # wrapped again at the new width

    def render_lines(self, crop: Region) -> list[Strip]:
        self._style = self.rich_style  # as it is now (a class, the theme or a selected bubble's background)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        rows = len(self._strips)
        strip = self._strips[y] if y < rows else self._last[y - rows] if y - rows < len(self._last) else Strip([])
        return strip.extend_cell_length(self.content_size.width).apply_style(self._style)

