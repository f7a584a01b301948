"""``python -m tuillm.tui.cli``: the same as the ``tuillm`` command."""

from tuillm.tui.cli import entry

entry()
