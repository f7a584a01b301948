"""An Input that draws no control character.

Textual's Input draws its value as it is (only BEL is dropped): an OSC in a pasted text, a completed file name or a
value read from a file or the chat database would retitle the terminal or write its clipboard, a CSI would move the
cursor. The value itself is kept as given, so a path with odd characters still names its file; what is drawn of it
(the value, a completion's suggestion) has its control characters taken out (``core.text.drawable``).
"""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Input

from tuillm.core.text import drawable


class SafeInput(Input):
    """An Input whose drawn line never holds a control character."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if all(segment.text.isprintable() for segment in strip):
            return strip
        return Strip([Segment(drawable(s.text), s.style, s.control) for s in strip], strip.cell_length)
