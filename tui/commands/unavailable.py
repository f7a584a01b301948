"""Subcommands of the design whose engine is not built yet: listed in ``--help`` with their arguments, and refused
with one clear line (exit 1) instead of pretending to work."""

from __future__ import annotations

from tuillm.core.errors import TuillmError


def refuse(command: str) -> TuillmError:
    return TuillmError(f"`tuillm {command}` is not available yet in this version (LoRA training is being built)")
