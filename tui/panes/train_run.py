"""The Train pane's run view: the stats line, the progress bar, the loss plot and the log, fed with the core's events.

The stats line reads like the CLI's progress lines: step, loss, eval loss, tokens/s, ETA and memory.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, RichLog, Static

from tuillm.core.events import Event, Log, Metric, Progress
from tuillm.core.text import format_bytes, safe_text
from tuillm.core.train.checkpoints import TrainResult
from tuillm.core.train.schedule import format_duration
from tuillm.tui.panes.train_jobs import NOUNS
from tuillm.tui.widgets.loss_plot import LossPlot

LOG_STYLES = {"warning": "yellow", "error": "red"}


def stats_line(stats: dict[str, float], progress: Progress) -> str:
    """``step 3/10 · loss 1.234 · eval 1.300 · 812 tok/s · set-up 9s · ETA 12s · RAM 1.2 GB`` from the latest
    metrics."""
    parts = [f"step {progress.done:g}/{progress.total:g}"]
    if "loss" in stats:
        parts.append(f"loss {stats['loss']:.3f}")
    if "eval_loss" in stats:
        parts.append(f"eval {stats['eval_loss']:.3f}")
    if "tokens_per_s" in stats:
        parts.append(f"{stats['tokens_per_s']:.0f} tok/s")  # steady state once the warm-up steps are done
    if "setup_s" in stats:
        parts.append(f"set-up {format_duration(stats['setup_s'])}")
    if "eta_s" in stats:
        parts.append(f"ETA {format_duration(stats['eta_s'])}")
    if "memory_bytes" in stats:
        parts.append(f"RAM {format_bytes(stats['memory_bytes'])}")
    return " · ".join(parts)


def done_line(result: TrainResult) -> str:
    final = f"loss {result.train_loss:.3f}" if result.train_loss is not None else ""
    if result.eval_loss is not None:
        final += f", eval {result.eval_loss:.3f}"
    return f"done: {result.steps} steps in {format_duration(result.seconds)}; {final}"


def cancel_question(job: str, stepping: bool = True) -> str:
    """What Esc asks before it stops ``job`` (a ``train_jobs`` job name): what stopping keeps and loses. A training
    that has not begun its first step (``stepping``) is still setting up: it stops at once, and nothing is saved."""
    if job == "train" and not stepping:
        return "Stop training? It is still setting up (reading the data, loading the base): nothing is saved yet."
    if job == "train":
        return "Stop training after this step? A checkpoint is saved (tick Resume and Start to continue)."
    return f"Stop the {NOUNS[job][1]}? The file being written is removed."


class RunView(Vertical):
    """Stats (``#train-stats``), progress (``#train-progress``), loss plot (``#train-plot``), log (``#train-log``)."""

    DEFAULT_CSS = """
    RunView {
        height: auto;
    }
    #train-stats {
        height: auto;  /* a long line (where the checkpoint is) wraps: cut at 80 columns, it lost its end */
    }
    #train-progress {
        height: 1;
    }
    #train-plot {
        height: 10;
    }
    #train-log {
        height: 8;
        border: none;
        background: $boost;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stats: dict[str, float] = {}  # the latest value of each metric
        self.stepping = False  # the run's first step began (before it, the run is setting up)

    def compose(self) -> ComposeResult:
        yield Static(Text("Not started.", style="dim"), id="train-stats")
        # Empty until a job reports: an unknown total would animate as if something were running.
        yield ProgressBar(total=100, show_eta=False, id="train-progress")
        yield LossPlot(id="train-plot")
        yield RichLog(id="train-log", wrap=True, markup=False, max_lines=2000, min_width=20)

    def reset(self, text: str) -> None:
        """A new run: no stats, no points, no log."""
        self.stats, self.stepping = {}, False
        self.query_one(LossPlot).clear()
        self.query_one(RichLog).clear()
        self.show(text)

    # The core's lines quote file names (the dataset's, the output folder's): never a control sequence on screen.
    def show(self, text: str, style: str = "") -> None:
        self.query_one("#train-stats", Static).update(Text(safe_text(text), style=style))

    def log(self, text: str, style: str = "") -> None:
        self.query_one(RichLog).write(Text(safe_text(text), style=style))

    def failed(self, text: str) -> None:
        self.show(text, "red")
        self.query_one(ProgressBar).update(total=100, progress=0)

    def add(self, event: Event) -> None:
        """One event of the running job: a log line, a metric (plotted when a loss), or progress."""
        if isinstance(event, Log):
            self.log(event.message, LOG_STYLES.get(event.level, ""))
        elif isinstance(event, Metric):
            self.stats[event.name] = event.value
            if event.name == "loss":
                self.query_one(LossPlot).add_train(event.step, event.value)
            elif event.name == "eval_loss":
                self.query_one(LossPlot).add_eval(event.step, event.value)
        else:
            bar = self.query_one(ProgressBar)
            if event.total:
                bar.update(total=event.total, progress=event.done)
            else:
                bar.update(total=None)
            if event.stage == "train":
                self.stepping = True
                self.show(stats_line(self.stats, event))
            else:
                self.show(f"{event.stage}: {event.message}")
