"""The Train pane's preview: the first examples of the dataset as the model will see them, with what carries loss
marked (core.train.preview), read on a worker thread whenever the base, the data or the max length change.

The same read also gives the base's shape, which the pane's memory estimate needs. The examples are the user's
data rendered by a model's template: shown through ``safe_text`` so no control sequence reaches the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from tuillm.core.errors import error_text
from tuillm.core.paths import expand_user
from tuillm.core.settings import Config
from tuillm.core.text import safe_line, safe_text
from tuillm.core.train.memory import ModelShape
from tuillm.core.train.pairs import PAIR_FORMATS
from tuillm.core.train.preview import CUT, TRAINED, BaseTokenizer, Preview, describe

PREVIEW_EXAMPLES = 3
PREVIEW_PAIRS = 2  # each shown as its chosen, then its rejected side
PREVIEW_DELAY_S = 0.4  # after the last keystroke in a path, before the preview is read again
TRAINED_STYLE = "bold green"
PROMPT_STYLE = "dim"
CUT_STYLE = "red strike"
NO_DATA = "Choose a dataset to see its first examples."
# Characters shown of each example: a one-line 5 MB example took seconds to wrap at every resize, the app frozen.
EXAMPLE_CHARS = 4000


def preview_text(preview: Preview, max_len: int) -> Text:
    """The preview as styled text: what carries loss in green, the prompt dim, what the cut drops struck out."""
    styles = {TRAINED: TRAINED_STYLE, CUT: CUT_STYLE}
    pairs = preview.format in PAIR_FORMATS  # examples alternate: a pair's chosen side, then its rejected one
    out = Text()
    out.append(safe_line(f"{preview.path.name}: {preview.count} {'preference pairs' if pairs else 'examples'}, "
                         f"{preview.format} format, template: {preview.template}") + "\n", "bold")
    out.append("green", TRAINED_STYLE).append(": the answer, scored (chosen over rejected) · " if pairs
                                              else ": carries loss · ")
    out.append("dim", PROMPT_STYLE)
    out.append(": prompt (no loss) · ").append("struck", CUT_STYLE).append(f": beyond {max_len} tokens, cut\n")
    for i, example in enumerate(preview.examples):
        side = ("chosen, " if i % 2 == 0 else "rejected, ") if pairs else ""
        out.append("\n" + safe_line(side + describe(example, max_len)) + "\n", "italic")
        left = EXAMPLE_CHARS
        for text, kind in example.pieces:
            # Cut before cleaning: this runs on the event loop, and a piece may be megabytes long.
            out.append(safe_text(text[:max(left, 0)]), styles.get(kind, PROMPT_STYLE))
            left -= len(text)
        if left < 0:
            out.append(f"… {-left:,} more characters not shown", "italic")
        if not out.plain.endswith("\n"):
            out.append("\n")
    return out


@dataclass(frozen=True)
class PreviewKey:
    """What a preview is of: the form's base, data, max length and loss rule when it was asked for."""

    base: str
    data: str
    max_len: int
    assistant_only: bool
    method: str = "sft"  # "dpo": the data is preference pairs (core.train.pairs)


class PreviewView(VerticalScroll):
    """The preview text (``#train-preview``); ``preview``, ``error`` and ``shape`` hold the latest read."""

    DEFAULT_CSS = """
    PreviewView {
        height: auto;
        max-height: 12;
    }
    #train-preview {
        height: auto;
    }
    """

    class Ready(Message):
        """A read finished (on the worker thread): the preview, or the error that stopped it; the base's shape
        when it could be read."""

        def __init__(self, key: PreviewKey, preview: Preview | None, error: str | None,
                     shape: ModelShape | None) -> None:
            super().__init__()
            self.key = key
            self.preview = preview
            self.error = error
            self.shape = shape

    def __init__(self, config: Config, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._config = config
        self.preview: Preview | None = None
        self.error: str | None = None
        self.shape: ModelShape | None = None
        self._key: PreviewKey | None = None
        self._timer: Timer | None = None
        self._notified_error: str | None = None
        self._tokenizers: dict[Path, BaseTokenizer] = {}  # used by the worker only

    def compose(self) -> ComposeResult:
        yield Static(Text(NO_DATA, style="dim"), id="train-preview")

    def schedule(self, key: PreviewKey) -> None:
        """Read ``key`` after a pause in typing."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(PREVIEW_DELAY_S, lambda: self.show(key))

    def show(self, key: PreviewKey, *, again: bool = False) -> None:
        """Read ``key`` now, unless it is what is shown already (``again``: read anyway, the file may have
        changed)."""
        if key == self._key and not again:
            return
        self._key = key
        self._read(key)

    @work(thread=True, exclusive=True, group="train-preview", exit_on_error=False)
    def _read(self, key: PreviewKey) -> None:
        from tuillm.core.models.catalog import resolve_model
        from tuillm.core.train.data import load_dataset
        from tuillm.core.train.memory import model_shape
        from tuillm.core.train.pairs import PairDataset, load_pairs, preview_pairs
        from tuillm.core.train.preview import base_tokenizer, preview

        shape = None
        if nul := next((name for name, text in (("Base", key.base), ("Data", key.data)) if "\x00" in text), None):
            self.post_message(self.Ready(key, None, f"{nul}: not a path (it holds a NUL character)", None))
            return  # pasted: os.stat refuses it with a bug's words ("ValueError: embedded null byte")
        try:
            path = resolve_model(key.base or "demo", self._config)
            shape = model_shape(path)
            if not key.data:
                self.post_message(self.Ready(key, None, None, shape))
                return
            data = expand_user(key.data)
            # A bad file is reported before the tokenizer loads.
            dataset = load_pairs(data) if key.method == "dpo" else load_dataset(data)
            if path not in self._tokenizers:
                self._tokenizers = {path: base_tokenizer(path)}  # the last base's only: a GGUF's holds a Llama
            if isinstance(dataset, PairDataset):
                result = preview_pairs(dataset, self._tokenizers[path], n=PREVIEW_PAIRS, max_len=key.max_len)
            else:
                result = preview(dataset, self._tokenizers[path], n=PREVIEW_EXAMPLES, max_len=key.max_len,
                                 assistant_only=key.assistant_only)
        except Exception as exc:  # shown in the pane: a bad file must not end the worker silently
            self.post_message(self.Ready(key, None, error_text(exc), shape))
            return
        self.post_message(self.Ready(key, result, None, shape))

    def on_preview_view_ready(self, event: Ready) -> None:
        # Bubbles on to the pane (its memory estimate) once shown here.
        if event.key != self._key:
            event.stop()
            return  # the form changed since
        self.shape, self.preview, self.error = event.shape, event.preview, event.error
        box = self.query_one("#train-preview", Static)
        if event.error:
            box.update(Text(event.error, style="red"))
            data = expand_user(event.key.data) if event.key.data else None
            # A file that exists but cannot be used is worth a notification; a path being typed is not.
            if data is not None and data.is_file() and event.error != self._notified_error:
                self._notified_error = event.error
                self.notify(event.error, title="Dataset", severity="error", timeout=15, markup=False)
        elif event.preview is not None:
            self._notified_error = None
            box.update(preview_text(event.preview, event.key.max_len))
        else:
            box.update(Text(NO_DATA, style="dim"))
