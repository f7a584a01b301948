"""The A/B screen: one prompt sent to the base model and to the tuned one, the two replies streamed side by side.

Each side is its own ``ChatSession`` (one ``Llama`` on its own worker thread), so both answer at once. The tuned
side is a merged GGUF, or the base GGUF with a GGUF LoRA adapter. Replies are greedy (temperature 0), so a
difference comes from the weights, not the sampling. Escape closes the screen and frees both models.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tuillm.core.chat.engine import ChatSession
from tuillm.core.chat.events import ReplyDone, Token
from tuillm.core.errors import error_text
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.tui.panes.chat import DRAW_INTERVAL_S  # streamed text is drawn at most this often, as in the Chat pane

SIDES = ("base", "tuned")
GREEDY = Sampling(temperature=0.0, max_tokens=256)


@dataclass(frozen=True)
class Model:
    """One side: a GGUF, and optionally a GGUF LoRA adapter applied on top."""

    path: Path
    name: str
    lora: Path | None = None


class ABScreen(ModalScreen[None]):
    HELP_TITLE = "A/B compare"
    BINDINGS = [
        Binding("escape", "close", "Close", id="train.ab_close", tooltip="Close the A/B view and free both models"),
    ]
    DEFAULT_CSS = """
    ABScreen {
        align: center middle;
    }
    #ab-box {
        width: 100%;
        height: 100%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    #ab-title {
        height: 1;
        text-style: bold;
    }
    #ab-sides {
        height: 1fr;
    }
    .ab-side {
        width: 1fr;
        height: 1fr;
    }
    .ab-side-title {
        height: 1;
        color: $accent;
        text-style: bold;
    }
    .ab-scroll {
        height: 1fr;
        border-right: vkey $panel-lighten-2;
    }
    #ab-prompt {
        height: 3;
    }
    """

    class SideEvent(Message):
        """Text, the end of a reply, or the end of a load, for one side (posted from its worker thread)."""

        def __init__(self, side: str, kind: str, value: Any = None) -> None:
            super().__init__()
            self.side = side
            self.kind = kind  # "loaded" | "done"
            self.value = value

    class TextReady(Message):
        pass

    def __init__(self, base: Model, tuned: Model, *, n_ctx: int = 2048, sampling: Sampling = GREEDY) -> None:
        super().__init__()
        self.models = {"base": base, "tuned": tuned}
        self.n_ctx = n_ctx
        self.sampling = sampling
        self._lock = threading.Lock()
        self._pending: dict[str, list[str]] = {side: [] for side in SIDES}
        self._draw_posted = False
        self.replies = {side: "" for side in SIDES}
        self.loaded = {side: False for side in SIDES}
        self.busy = {side: False for side in SIDES}
        self.errors: dict[str, str] = {}
        self.sessions = {side: ChatSession(self._forwarder(side)) for side in SIDES}
        self._sessions_closed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="ab-box"):
            yield Label("A/B: one prompt, base and tuned side by side · Enter sends · Esc closes", id="ab-title")
            with Horizontal(id="ab-sides"):
                for side in SIDES:
                    model = self.models[side]
                    with Vertical(classes="ab-side"):
                        title = f"{side.title()} · {model.name}" + (" + LoRA" if model.lora else "")
                        yield Label(Text(title), classes="ab-side-title")
                        with VerticalScroll(classes="ab-scroll"):
                            yield Static(Text("loading…", style="dim"), id=f"ab-{side}")
            yield Input(placeholder="Prompt for both models · Enter sends", id="ab-prompt")

    def on_mount(self) -> None:
        self.query_one("#ab-prompt", Input).focus()
        self._load(0)

    def _load(self, index: int) -> None:
        """Load the sides one after the other: a load redirects the process's stdout/stderr for a moment, and
        two overlapping redirections can leave them pointing at a finished load's buffer."""
        side = SIDES[index]
        model = self.models[side]
        options = LoadOptions(n_ctx=self.n_ctx, lora_path=str(model.lora) if model.lora else None)

        def loaded(future: Future[Any]) -> None:  # on the session's worker thread
            self.post_message(self.SideEvent(side, "loaded", future))
            if index + 1 < len(SIDES) and not self._sessions_closed:
                self._load(index + 1)

        self.sessions[side].load(model.path, options).add_done_callback(loaded)

    def on_unmount(self) -> None:
        self._close_sessions()

    def _close_sessions(self) -> None:
        if self._sessions_closed:
            return
        self._sessions_closed = True
        for session in self.sessions.values():
            session.close()  # stops a running reply, unloads, ends its thread

    def _forwarder(self, side: str) -> Any:
        def forward(event: Any) -> None:  # on the session's worker thread
            if isinstance(event, Token) and event.text:
                with self._lock:
                    self._pending[side].append(event.text)
                    post, self._draw_posted = not self._draw_posted, True
                if post:
                    self.post_message(self.TextReady())

        return forward

    def _show(self, side: str, text: str, style: str = "") -> None:
        self.query_one(f"#ab-{side}", Static).update(Text(text, style=style))

    def on_abscreen_side_event(self, event: SideEvent) -> None:
        future: Future[Any] = event.value
        exc = future.exception()
        if event.kind == "loaded":
            if exc is not None:
                self.errors[event.side] = error_text(exc)
                self._show(event.side, f"could not load: {self.errors[event.side]}", "red")
                self.notify(self.errors[event.side], title=f"A/B: {event.side}", severity="error", markup=False)
            else:
                self.loaded[event.side] = True
                self._show(event.side, "ready", "dim")
            return
        self.busy[event.side] = False
        self._draw()
        if exc is not None:
            self.errors[event.side] = error_text(exc)
            self._show(event.side, self.replies[event.side] + f"\n[{self.errors[event.side]}]", "red")
        elif isinstance(future.result(), ReplyDone):
            self.replies[event.side] = future.result().text or self.replies[event.side]
            self._show(event.side, self.replies[event.side])

    def on_abscreen_text_ready(self, _event: TextReady) -> None:
        self._draw()
        if any(self.busy.values()):
            self.set_timer(DRAW_INTERVAL_S, self._draw)

    def _draw(self) -> None:
        with self._lock:
            pending = {side: "".join(parts) for side, parts in self._pending.items()}
            for parts in self._pending.values():
                parts.clear()
            self._draw_posted = False
        for side, text in pending.items():
            if text:
                self.replies[side] += text
                self._show(side, self.replies[side])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value.strip()
        if not prompt:
            return
        if any(self.busy.values()):
            self.notify("the replies are still coming: wait, or Esc to close", title="A/B", severity="warning")
            return
        ready = [side for side in SIDES if self.loaded[side]]
        if len(ready) < len(SIDES):
            waiting = [side for side in SIDES if side not in ready and side not in self.errors]
            self.notify("still loading the models" if waiting else "a model could not be loaded", title="A/B",
                        severity="warning")
            return
        event.input.clear()
        for side in SIDES:
            self.replies[side] = ""
            self.busy[side] = True
            self._show(side, "…", "dim")
            future = self.sessions[side].reply([{"role": "user", "content": prompt}], self.sampling)
            future.add_done_callback(lambda f, s=side: self.post_message(self.SideEvent(s, "done", f)))

    def action_close(self) -> None:
        # Freed now, not when the screen is garbage-collected: each side holds a whole model.
        self._close_sessions()
        self.dismiss(None)
