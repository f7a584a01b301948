"""What a front end needs from a chat engine, as a Protocol; ``ChatSession`` (llama.cpp) is the real one.

The Chat pane depends only on ``ChatBackend`` and builds its backend with a ``ChatBackendFactory`` it is given
(``llama_backend`` unless the app says otherwise), so tests can run the pane on a fake that streams fixed tokens,
with no model. The contract is the engine's: methods are safe to call from any thread, work returns a ``Future``,
and events reach ``emit`` (and a reply's ``listener``) on the backend's own thread, in the order ``events`` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from tuillm.core.chat.events import ChatEmit, ModelLoaded, ReplyDone
from tuillm.core.llama.options import LoadOptions, Sampling

ChatMessage = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": text}


class ChatBackend(Protocol):
    @property
    def loaded(self) -> bool: ...

    @property
    def model_path(self) -> str | None: ...

    @property
    def lora_path(self) -> str | None:
        """The LoRA adapter GGUF loaded over the model (None: none)."""

    @property
    def n_ctx(self) -> int:
        """The loaded model's context size (0: none loaded)."""

    @property
    def context_used(self) -> int:
        """Tokens in the context now (prompt and reply of the last turn)."""

    def load(self, path: str | Path, options: LoadOptions | None = None) -> Future[ModelLoaded]:
        """Loads ``path`` in place of the current model; a refused load leaves the current one loaded."""

    def reply(self, messages: Sequence[ChatMessage], sampling: Sampling | None = None,
              listener: ChatEmit | None = None) -> Future[ReplyDone]:
        """Streams the answer to ``messages`` (ending with the user's): events to emit, then to ``listener``."""

    def count_tokens(self, messages: Sequence[ChatMessage]) -> Future[int]:
        """Tokens of ``messages`` as the loaded model's template renders them (the prompt a reply would take);
        fails with a ``TuillmError`` when no model is loaded."""

    def stop(self) -> None:
        """Ends the running (and any queued) reply before its next token."""

    def close(self) -> None:
        """Stops, unloads and ends the backend's thread (waits for it)."""


ChatBackendFactory = Callable[[ChatEmit], ChatBackend]


def llama_backend(emit: ChatEmit) -> ChatBackend:
    """The real backend: a ``ChatSession`` over llama.cpp."""
    from tuillm.core.chat.engine import ChatSession

    return ChatSession(emit)
