"""What every pane may need from the app's start-up: the config, test-only fixed figures, and ``ChatUse``: which
model files the Chat pane uses now (the Models pane reads it before deleting one, and tells it after)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tuillm.core.chat.backend import ChatBackendFactory
from tuillm.core.models.hardware import Hardware
from tuillm.core.settings import Config, save_config

Use = Literal["loaded", "loading", "chat"]


@dataclass(frozen=True)
class ChatUse:
    """The files the Chat pane uses now (each a model or a LoRA adapter GGUF)."""

    loaded: tuple[Path, ...] = ()  # in memory (llama.cpp maps the model's file)
    loading: tuple[Path, ...] = ()
    chat: tuple[Path, ...] = ()  # the open chat's own, loaded or not (a new chat's: the model it goes on with)

    def use_of(self, path: Path) -> Use | None:
        """How the Chat pane uses ``path`` (the same file by another name too), the closest use first."""
        target = path.resolve()
        for use, paths in (("loaded", self.loaded), ("loading", self.loading), ("chat", self.chat)):
            if any(p.resolve() == target for p in paths):
                return use
        return None


class ChatUseBoard:
    """Where the Chat pane says which files it uses (a function it provides, asked when needed) and hears that a model
    file was deleted: the panes share the app's ``Session``, so the Models pane asks and tells without reaching into
    the Chat pane."""

    def __init__(self) -> None:
        self._provider: Callable[[], ChatUse] | None = None
        self._on_deleted: Callable[[Path], None] | None = None

    def provide(self, provider: Callable[[], ChatUse] | None,
                on_deleted: Callable[[Path], None] | None = None) -> None:
        self._provider, self._on_deleted = provider, on_deleted

    def now(self) -> ChatUse:
        return self._provider() if self._provider is not None else ChatUse()

    def deleted(self, path: Path) -> None:
        """``path`` (a model or adapter GGUF) was deleted: the Chat pane says so at once where a chat uses it."""
        if self._on_deleted is not None:
            self._on_deleted(path)


@dataclass(frozen=True)
class Session:
    """What every pane may need from the app's start-up: the config, test-only fixed figures, the Chat pane's use."""

    config: Config = field(default_factory=Config)
    # Overrides config.model_dirs (tests point the catalog at a temporary folder).
    model_dirs: list[Path] | None = None
    # A fixed "available RAM" for the fit column, so a snapshot does not depend on the machine.
    available_ram: int | None = None
    # Fixed hardware figures for the Models pane's hardware line and advice (tests and snapshots).
    hardware: Hardware | None = None
    # What the Chat pane chats through; None: llama.cpp (snapshot tests pass a fake that streams fixed tokens).
    chat_backend: ChatBackendFactory | None = None
    # Which model files the Chat pane uses now (it provides them once mounted).
    chat_use: ChatUseBoard = field(default_factory=ChatUseBoard, compare=False)

    def save_config(self) -> tuple[Path, str | None]:
        """Write the config to its file (an OSError passes); with the problem the save brought, else None: a bad
        value edited into the file while the app ran, which the save merges in and reports (its default used)."""
        before = self.config.problem
        file = save_config(self.config)
        problem = self.config.problem
        return file, problem if problem and problem != before else None
