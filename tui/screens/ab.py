"""The A/B screen: one prompt sent to the base model and to the tuned one, the two replies streamed side by side.

Each side is its own chat backend (one ``Llama`` on its own worker thread), so both answer at once. The tuned
side is a merged GGUF, or the base GGUF with a GGUF LoRA adapter. Replies are greedy (temperature 0), so a
difference comes from the weights, not the sampling. Escape stops both replies while they stream (what came is
kept), and otherwise closes the screen and frees both models (on a thread: a load cannot be cut short).

``next_ab_step`` is the way there from a finished training run: what must be made first (an exported adapter, a
merged model, the base as a GGUF) before the two sides exist; the Train pane runs each step and asks again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Label, Static

from tuillm.core.chat.backend import ChatBackend, ChatBackendFactory, llama_backend
from tuillm.core.chat.events import ChatEvent, ModelLoaded, ReplyDone, ReplyStarted, Token
from tuillm.core.errors import error_text
from tuillm.core.llama.options import LoadOptions, Sampling
from tuillm.core.text import safe_line, safe_text
from tuillm.tui import keymap
from tuillm.tui.panes.chat_stream import DrawPace  # streamed text is drawn at Chat's pace
from tuillm.tui.widgets.chat_view import following_after
from tuillm.tui.widgets.safe_input import SafeInput

SIDES = ("base", "tuned")
GREEDY = Sampling(temperature=0.0, max_tokens=256)


@dataclass(frozen=True)
class Model:
    """One side: a GGUF, and optionally a GGUF LoRA adapter applied on top."""

    path: Path
    name: str
    lora: Path | None = None


# --- the way there from a training run ------------------------------------------------------------------------


@dataclass(frozen=True)
class ABSources:
    """What a finished run has made so far."""

    base: Path  # the run's base: a GGUF or an HF folder
    adapter_dir: Path
    merged: Path | None  # the merged GGUF
    lora_gguf: Path | None  # the adapter as a GGUF LoRA
    base_gguf: Path | None  # the base as a GGUF, when known
    merge_type: str  # the type a merge or a conversion of the base writes


@dataclass(frozen=True)
class ExportFirst:
    """The base is a GGUF: the adapter as a GGUF LoRA over it is the cheapest tuned side."""


@dataclass(frozen=True)
class MergeFirst:
    """The base is an HF folder: the tuned side is the merged model."""


@dataclass(frozen=True)
class ConvertBaseFirst:
    """The base side needs the HF base as a GGUF, written once to ``out`` (kept in the adapter folder)."""

    out: Path


@dataclass(frozen=True)
class Compare:
    base: Model
    tuned: Model


ABStep = ExportFirst | MergeFirst | ConvertBaseFirst | Compare


def next_ab_step(run: ABSources, is_gguf: Callable[[Path], bool], demo: Path | None) -> ABStep:
    """What to make next before A/B can open (or the two sides, once all is there)."""
    base_gguf = run.base_gguf or (run.base if is_gguf(run.base) else None)
    if run.merged is None and run.lora_gguf is None:
        return ExportFirst() if base_gguf is not None else MergeFirst()
    if base_gguf is None:
        out = run.adapter_dir / f"base-{run.merge_type}.gguf"
        if not out.is_file():
            return ConvertBaseFirst(out)
        base_gguf = out
    if run.merged is not None:
        tuned = Model(run.merged, run.merged.stem)
    else:
        tuned = Model(base_gguf, base_gguf.stem, lora=run.lora_gguf)
    return Compare(Model(base_gguf, "demo" if base_gguf == demo else base_gguf.stem), tuned)


# --- the screen -----------------------------------------------------------------------------------------------


class SideLoaded(Message):
    """A side's model loaded (``error`` None) or could not be (posted from its backend's thread)."""

    def __init__(self, side: str, error: str | None) -> None:
        super().__init__()
        self.side = side
        self.error = error


class SideReplied(Message):
    """A side's reply ended: its full text, or the error that ended it (posted from its backend's thread)."""

    def __init__(self, side: str, text: str | None, error: str | None, stopped: bool = False) -> None:
        super().__init__()
        self.side = side
        self.text = text
        self.error = error
        self.stopped = stopped


class TextReady(Message):
    """Streamed text waits to be drawn."""


class ABScreen(ModalScreen[None]):
    HELP_TITLE = "A/B compare"
    BINDINGS = keymap.AB
    DEFAULT_CSS = """
    ABScreen { align: center middle; }
    #ab-box {
        width: 100%;
        height: 100%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    #ab-title {
        width: 100%;
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        text-style: bold;
    }
    #ab-question { height: auto; max-height: 3; display: none; }
    #ab-sides { height: 1fr; }
    .ab-side { width: 1fr; height: 1fr; }
    /* As wide as its side and cut with "…": as wide as its text, a long name ran into the other side's title. */
    .ab-side-title {
        width: 100%;
        height: 1;
        padding-right: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        color: $accent;
        text-style: bold;
    }
    /* A thin scrollbar (coloured to show, as every one: app.tcss). Tab reaches each side; the focused side's title
       is reversed. */
    .ab-scroll {
        height: 1fr;
        border-right: vkey $panel-lighten-2;
        scrollbar-size-vertical: 1;
    }
    .ab-side:focus-within .ab-side-title { text-style: bold reverse; }
    #ab-prompt { height: 3; }
    """

    def __init__(self, base: Model, tuned: Model, *, n_ctx: int = 2048, sampling: Sampling = GREEDY,
                 backends: ChatBackendFactory = llama_backend) -> None:
        """``backends`` makes each side's chat backend (a test passes a fake: no model needed)."""
        super().__init__()
        self.models = {"base": base, "tuned": tuned}
        self.n_ctx = n_ctx
        self.sampling = sampling
        self._lock = threading.Lock()
        self._pending: dict[str, list[str]] = {side: [] for side in SIDES}
        self._draw_posted = False  # a TextReady is on its way (posted once per batch of tokens)
        self._pace = DrawPace()
        self._next_draw: Timer | None = None  # while text keeps coming
        self.replies = {side: "" for side in SIDES}
        self.loaded = {side: False for side in SIDES}
        self.busy = {side: False for side in SIDES}
        self.errors: dict[str, str] = {}
        self.took = {side: False for side in SIDES}  # the side's reply started: it took the prompt
        self.following = {side: True for side in SIDES}  # the side's view keeps its reply's end in view
        self._asked = ""
        self.sessions: dict[str, ChatBackend] = {side: backends(self._forwarder(side)) for side in SIDES}
        self._sessions_closed = False
        self._closer: threading.Thread | None = None
        self._close_lock = threading.Lock()
        self.closed = threading.Event()  # set once both sides are closed (their models freed, threads ended)

    def compose(self) -> ComposeResult:
        with Vertical(id="ab-box"):
            yield Label("A/B: one prompt, base and tuned side by side · Enter sends · Esc stops, closes · "
                        "Tab scrolls the answers", id="ab-title")
            # The question stays above both answers (the prompt field is cleared for the next one).
            yield Static("", id="ab-question")
            with Horizontal(id="ab-sides"):
                for side in SIDES:
                    model = self.models[side]
                    with Vertical(classes="ab-side"):
                        title = f"{side.title()} · {model.name}" + (" + LoRA" if model.lora else "")
                        yield Label(Text(safe_line(title)), classes="ab-side-title")  # names from the disk
                        with VerticalScroll(classes="ab-scroll", id=f"ab-scroll-{side}"):
                            yield Static(Text("loading…", style="dim"), id=f"ab-{side}")
            yield SafeInput(placeholder="Prompt for both models · Enter sends", id="ab-prompt")

    def on_mount(self) -> None:
        self.query_one("#ab-prompt", Input).focus()
        for side in SIDES:
            scroll = self.query_one(f"#ab-scroll-{side}", VerticalScroll)
            self.watch(scroll, "scroll_y", self._scrolled(side, scroll), init=False)
        self._load(0)

    def _scrolled(self, side: str, scroll: VerticalScroll) -> Callable[[float, float], None]:
        def scrolled(old: float, new: float) -> None:  # as in the chat view; every scroll step, so no query
            self.following[side] = following_after(self.following[side], old, new, scroll.max_scroll_y)
        return scrolled

    def _load(self, index: int) -> None:
        """Load the sides one after the other: a load redirects the process's stdout/stderr for a moment, and
        two overlapping redirections can leave them pointing at a finished load's buffer."""
        side = SIDES[index]
        model = self.models[side]
        options = LoadOptions(n_ctx=self.n_ctx, lora_path=str(model.lora) if model.lora else None)

        def loaded(future: Future[ModelLoaded]) -> None:  # on the backend's thread
            exc = future.exception()
            self.post_message(SideLoaded(side, error_text(exc) if exc is not None else None))
            if index + 1 < len(SIDES):
                self._load(index + 1)

        with self._close_lock:  # a load is queued before the closing thread closes the side, or not at all
            if self._sessions_closed:
                return
            future = self.sessions[side].load(model.path, options)
        future.add_done_callback(loaded)  # outside the lock: a load done already calls back at once

    def on_unmount(self) -> None:
        self._close_sessions()

    def _close_sessions(self) -> threading.Thread:
        """Closes both sides on a thread of its own, started once: ``close`` waits for a load under way (it cannot
        be cut short), and on the event loop that froze the screen until the load ended. Not a daemon: the
        process, quitting meanwhile, still waits for both models to be freed."""
        with self._close_lock:
            if self._closer is None:
                self._sessions_closed = True
                self._closer = threading.Thread(target=self._close_all, name="tuillm-ab-close", daemon=False)
                self._closer.start()
            return self._closer

    def _close_all(self) -> None:  # on the closing thread
        try:
            for session in self.sessions.values():
                session.close()  # stops a running reply, unloads, ends its thread
        finally:
            self.closed.set()

    def _loading(self) -> bool:
        return any(not self.loaded[side] and side not in self.errors for side in SIDES)

    def _forwarder(self, side: str) -> Callable[[ChatEvent], None]:
        def forward(event: ChatEvent) -> None:  # on the backend's thread
            if isinstance(event, ReplyStarted):
                self.took[side] = True
            text = safe_text(event.text) if isinstance(event, Token) else ""  # the model's: no escapes drawn
            if text:
                with self._lock:
                    self._pending[side].append(text)
                    post, self._draw_posted = not self._draw_posted, True
                if post:
                    self.post_message(TextReady())

        return forward

    def _show(self, side: str, text: str | Text, style: str = "") -> None:
        """``side``'s answer; its view follows the end while it was at the end (a long reply ran below the view)."""
        scroll = self.query_one(f"#ab-scroll-{side}", VerticalScroll)
        self.query_one(f"#ab-{side}", Static).update(text if isinstance(text, Text) else Text(text, style=style))
        if self.following[side]:
            scroll.call_after_refresh(scroll.scroll_end, animate=False)

    def on_side_loaded(self, event: SideLoaded) -> None:
        if event.error is not None:
            self.errors[event.side] = event.error
            self._show(event.side, f"could not load: {event.error}", "red")
            self.notify(event.error, title=f"A/B: {event.side}", severity="error", markup=False)
        else:
            self.loaded[event.side] = True
            self._show(event.side, "ready", "dim")

    def on_side_replied(self, event: SideReplied) -> None:
        self.busy[event.side] = False
        self._draw()
        side = event.side
        if event.error is not None:
            self.errors[side] = event.error
            self._show(side, self.replies[side] + f"\n[{event.error}]", "red")
        else:
            self.replies[side] = event.text or self.replies[side]
            shown = Text(self.replies[side])
            if event.stopped:  # by Esc: what came is kept, said to be cut short
                shown.append(("\n" if self.replies[side] else "") + "[stopped]", style="dim italic")
            self._show(side, shown)
        prompt = self.query_one("#ab-prompt", Input)
        if not any(self.busy.values()) and not any(self.took.values()) and not prompt.value:
            prompt.value = self._asked  # neither side took it (too long, stopped while queued): not lost

    def on_text_ready(self, _event: TextReady) -> None:
        if self._next_draw is None:  # the first text after a pause is drawn at once; a timer draws the rest
            self._paced_draw()

    def _paced_draw(self) -> None:
        """Draw what came, then again at the pace while text keeps coming (both models decode meanwhile: every
        draw takes CPU from them)."""
        self._next_draw = None
        if self._draw():
            self._next_draw = self.set_timer(self._pace.next(), self._paced_draw)

    def _draw(self) -> bool:
        """The text that came since the last draw, drawn; whether there was any."""
        with self._lock:
            pending = {side: "".join(parts) for side, parts in self._pending.items()}
            for parts in self._pending.values():
                parts.clear()
            self._draw_posted = False
        for side, text in pending.items():
            if text:
                self.replies[side] += text
                self._show(side, self.replies[side])
        return any(pending.values())

    def _replied(self, side: str) -> Callable[[Future[ReplyDone]], None]:
        def done(future: Future[ReplyDone]) -> None:  # on the backend's thread
            exc = future.exception()
            if exc is not None:
                self.post_message(SideReplied(side, None, error_text(exc)))
            else:
                done = future.result()
                stopped = done.stats.finish_reason == "cancelled"
                self.post_message(SideReplied(side, safe_text(done.text), None, stopped))

        return done

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value.strip()
        if not prompt:
            return
        if any(self.busy.values()):
            self.notify("the replies are still coming: wait, or Esc to stop them", title="A/B", severity="warning")
            return
        ready = [side for side in SIDES if self.loaded[side]]
        if len(ready) < len(SIDES):
            waiting = [side for side in SIDES if side not in ready and side not in self.errors]
            self.notify("still loading the models" if waiting else "a model could not be loaded", title="A/B",
                        severity="warning")
            return
        self._asked = event.value
        event.input.clear()  # given back if neither side takes it (on_side_replied)
        self._pace.begin()
        question = self.query_one("#ab-question", Static)
        question.update(Text.assemble(("Q: ", "bold"), safe_text(prompt)))  # typed or pasted: may hold escapes
        question.display = True
        for side in SIDES:
            self.replies[side] = ""
            self.busy[side] = True
            self.took[side] = False
            self.following[side] = True  # a new answer: followed wherever the last one was left
            self._show(side, "…", "dim")
            future = self.sessions[side].reply([{"role": "user", "content": prompt}], self.sampling)
            future.add_done_callback(self._replied(side))

    async def action_close(self) -> None:
        """Esc: stops both replies while they stream (as Esc stops Chat's), else closes the view."""
        if any(self.busy.values()):
            for session in self.sessions.values():
                session.stop()  # a side already done has nothing to stop
            return
        if self._closer is not None:  # a second Esc while the first one closes
            return
        # Freed now, not when the screen is garbage-collected: each side holds a whole model.
        closer = self._close_sessions()
        if not self._loading():  # quick (an unload): the view goes once both are freed, the loop free meanwhile
            await asyncio.to_thread(closer.join)
        self.dismiss(None)  # a load under way: at once, the models freed once it ends
