"""What every pane may need from the app's start-up: the config, and test-only fixed figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuillm.core.chat.backend import ChatBackendFactory
from tuillm.core.models.hardware import Hardware
from tuillm.core.settings import Config


@dataclass(frozen=True)
class Session:
    """What every pane may need from the app's start-up: the config, and test-only fixed figures."""

    config: Config = field(default_factory=Config)
    # Overrides config.model_dirs (tests point the catalog at a temporary folder).
    model_dirs: list[Path] | None = None
    # A fixed "available RAM" for the fit column, so a snapshot does not depend on the machine.
    available_ram: int | None = None
    # Fixed hardware figures for the Models pane's hardware line and advice (tests and snapshots).
    hardware: Hardware | None = None
    # What the Chat pane chats through; None: llama.cpp (snapshot tests pass a fake that streams fixed tokens).
    chat_backend: ChatBackendFactory | None = None
