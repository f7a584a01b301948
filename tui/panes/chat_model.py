"""Which model the Chat pane talks to, and loading it off the event loop.

The model is chosen lazily: the demo model unless the user picked one (the Models pane's Enter), loaded with the
first message so the app starts without touching llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from textual.message import Message

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.events import ModelLoaded, ReplyDone
from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit
from tuillm.core.llama.options import LoadOptions

DEMO = "demo"
LOAD_JOB = "chat-load"  # the worker group of every load (and of the memory guard's unload): one failure handler
# A step of a conversation (send, regenerate, edit and resend); it may wait for the model to load first.
Turn = Callable[[Conversation], "Future[ReplyDone]"]


class ModelReady(Message):
    def __init__(self, loaded: ModelLoaded, then: Turn | None) -> None:
        super().__init__()
        self.loaded = loaded
        self.then = then  # the turn that waited for the model


def model_label(path: str | Path) -> str:
    """How the header and status line name a model: "demo", or its file name."""
    from tuillm.core.paths import demo_model_path

    demo = demo_model_path()
    return DEMO if demo is not None and Path(path) == demo else Path(path).name


def load_checked(backend: ChatBackend, path: Path, options: LoadOptions, available_ram: int | None,
                 _emit: Emit) -> ModelLoaded:
    """Loads ``path`` (on a worker thread; the backend's own events reach the pane through its emit).

    First the Models pane's fit marker, judged against the same available RAM: what it marks "too big" is
    refused here, before llama.cpp is touched (the engine checks again against the live figure).
    """
    from tuillm.core.models.memory import load_refusal
    from tuillm.core.models.metadata import read_info

    try:
        refusal = load_refusal(read_info(path), options, available_ram)
    except Exception:  # a bad file (or anything else): the backend's load reports it, this only pre-checks
        refusal = None
    if refusal is not None:
        raise TuillmError(refusal)
    return backend.load(path, options).result()
