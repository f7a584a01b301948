"""The one exception the converter raises for bad input; its message is a single line fit for the user."""

from __future__ import annotations


class ConvertError(Exception):
    """A checkpoint or output that cannot be converted (unsupported architecture, missing file, bad shard...)."""
