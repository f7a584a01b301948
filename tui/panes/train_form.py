"""The Train pane's parameters: a form generated from ``core.train.options.TRAIN_OPTIONS``, field by field.

A number or text option is an input, an option with choices a select, a yes/no option a checkbox; labels, defaults
and tooltips are the declaration's, so the form, ``tuillm train``'s flags and ``TrainConfig`` cannot disagree.
Typed text is read back through the same declaration (``Option.parse``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label, Select

from tuillm.core.errors import TuillmError
from tuillm.core.options import Option, OptionError
from tuillm.core.text import format_bytes
from tuillm.core.train.distributed import unoffered_options
from tuillm.core.train.memory import TrainMemoryEstimate
from tuillm.core.train.options import TRAIN_OPTIONS, TrainConfig, parse_targets
from tuillm.tui.widgets.safe_input import SafeInput

Field = Input | Select[str] | Checkbox
Raw = str | bool  # what a field holds: its text, its choice, or its tick


def replace_question(out: Path, resume: bool) -> str | None:
    """What to ask before a run writes into ``out`` when something there would be lost (a finished adapter, or the
    checkpoints of another run when not resuming it); None when nothing would."""
    from tuillm.core.train.checkpoints import ADAPTER_CONFIG, latest_checkpoint

    if (out / ADAPTER_CONFIG).exists():
        return f"{out} holds a trained adapter. Replace it?"
    if not resume and latest_checkpoint(out) is not None:
        return f"{out} holds checkpoints of an unfinished run (tick Resume to continue it). Start over?"
    return None


def field_id(name: str) -> str:
    return f"train-{name}"


def _tooltip(option: Option) -> str:
    return option.help[:1].upper() + option.help[1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_form(raw: Mapping[str, Raw]) -> dict[str, Any]:
    """The options' values from the form's fields; one TuillmError for everything wrong ("not a number: Rank",
    "LR: must be a number above 0, not '0'"), in the form's order."""
    values: dict[str, Any] = {}
    not_numbers: list[str] = []
    problems: list[str] = []
    for option in TRAIN_OPTIONS:
        value = raw[option.name]
        try:
            if option.name == "targets":  # module names, comma-separated: the one list-valued option
                values[option.name] = parse_targets(str(value))
            elif isinstance(value, bool):
                values[option.name] = option.check_field(value, option.title)
            else:
                values[option.name] = option.parse_field(value)
        except OptionError as exc:
            numeric = option.kind in (int, float) and option.choices is None
            if numeric and isinstance(value, str) and value.strip() and not _is_number(value):
                not_numbers.append(option.title)
            else:
                problems.append(str(exc))
    if not_numbers:
        problems.insert(0, f"not a number: {', '.join(not_numbers)}")
    if problems:
        raise TuillmError("; ".join(problems))
    return values


def memory_text(est: TrainMemoryEstimate, available: int | None) -> Text:
    """What the form's settings take: the estimate, its parts, and a warning when it is more than is free."""
    text = (f"Training memory ≈ {format_bytes(est.total_bytes)} ({est.device}, {est.dtype}): weights "
            f"{format_bytes(est.weights_bytes)}, LoRA {est.lora_params / 1e6:.1f}M params + optimizer "
            f"{format_bytes(est.lora_bytes)}, activations {format_bytes(est.activation_bytes)}")
    if est.device == "cpu" and available and est.total_bytes > available:
        return Text(text + f" · more than the {format_bytes(available)} available", style="yellow")
    return Text(text)


class TrainForm(Vertical):
    """Every training option as a field (id ``train-<name>``), two a row; checkboxes on a row of their own."""

    DEFAULT_CSS = """
    TrainForm {
        height: auto;
    }
    #train-form {
        grid-size: 4;
        grid-columns: 11 1fr 11 1fr;
        grid-rows: 1;
        grid-gutter: 0 1;
        height: auto;
    }
    #train-form .train-label {
        width: 11;
        color: $text-muted;
    }
    #train-checks {
        height: auto;
    }
    #train-checks Checkbox {
        width: auto;
    }
    TrainForm.-narrow #train-checks {
        layout: grid;
        grid-size: 2;
        grid-columns: auto auto;
        grid-rows: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fields: dict[str, Field] = {}

    def _field(self, option: Option, shown: bool = True) -> Field:
        widget_id, tooltip = field_id(option.name), _tooltip(option)
        widget: Field
        if option.kind is bool:
            widget = Checkbox(option.title, bool(option.default), id=widget_id, tooltip=tooltip, compact=True)
        elif option.choices is not None:
            widget = Select([(c, c) for c in option.choices], value=option.default, allow_blank=False,
                            id=widget_id, tooltip=tooltip, compact=True)
        else:
            widget = SafeInput(option.format(option.default), id=widget_id, tooltip=tooltip, compact=True)
        self.fields[option.name] = widget
        widget.display = shown
        return widget

    def compose(self) -> ComposeResult:
        hidden = unoffered_options()  # processes and FSDP with one core (or GPU): kept at defaults
        with Grid(id="train-form"):
            for option in TRAIN_OPTIONS:
                if option.kind is not bool:
                    label = Label(option.title, classes="train-label")
                    label.display = option.name not in hidden
                    yield label
                    yield self._field(option, option.name not in hidden)
        with Horizontal(id="train-checks"):
            for option in TRAIN_OPTIONS:
                if option.kind is bool:
                    yield self._field(option, option.name not in hidden)

    def on_resize(self) -> None:
        # In one row the checkboxes ran past the edge at 60 columns (Resume could not be seen): two a row there.
        checks = [w for w in self.fields.values() if isinstance(w, Checkbox) and w.display]
        self.set_class(self.size.width < sum(len(str(w.label)) + 5 for w in checks), "-narrow")

    def raw(self) -> dict[str, Raw]:
        """What each field holds now."""
        out: dict[str, Raw] = {}
        for name, widget in self.fields.items():
            if isinstance(widget, Checkbox):
                out[name] = widget.value
            elif isinstance(widget, Select):
                out[name] = str(widget.value)
            else:
                out[name] = widget.value
        return out

    def config(self, base: str, data: str, output: str) -> TrainConfig:
        """A checked TrainConfig from the form; a TuillmError says what is wrong."""
        config = TrainConfig(base=base, data=[data], output=output, **parse_form(self.raw()))
        config.check()
        return config
