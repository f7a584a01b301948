"""A chat's options: its system prompt and sampling (Ctrl+S saves, Esc cancels).

The sampling fields are built from ``SAMPLING_OPTIONS`` and checked by their ``Option.parse``: the same labels,
bounds and messages as the settings file and ``tuillm chat``'s flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, TextArea

from tuillm.core.llama.options import SAMPLING_OPTIONS, SEED, Sampling
from tuillm.tui import keymap
from tuillm.tui.screens.dialog_css import DIALOG_CSS
from tuillm.tui.widgets.safe_input import SafeInput
from tuillm.tui.widgets.safe_text_area import SafeTextArea

# The seed is per chat, not a [sampling] key of the settings file: -1 (the declaration's "random") lets the load
# seed's generator continue (Sampling.seed None).
SEED_FIELD = SEED.name
SEED_LABEL = "Seed (-1 random)"
RANDOM_SEED = SEED.default


@dataclass(frozen=True)
class ChatOptions:
    system_prompt: str
    sampling: Sampling


def parse_sampling(values: Mapping[str, str]) -> Sampling:
    """The form's text fields as ``Sampling``; an ``OptionError`` (a ValueError) names the first bad field in the
    declaration's words, as the settings file and the flags do."""
    parsed = {option.name: option.parse_field(values.get(option.name, "")) for option in SAMPLING_OPTIONS}
    seed = SEED.parse_field(values.get(SEED_FIELD, ""), SEED_LABEL)
    return Sampling(**parsed, seed=None if seed == RANDOM_SEED else seed)


def form_values(sampling: Sampling) -> dict[str, str]:
    """The text each field shows for ``sampling`` (the inverse of ``parse_sampling``)."""
    values = {option.name: option.format(getattr(sampling, option.name)) for option in SAMPLING_OPTIONS}
    values[SEED_FIELD] = str(RANDOM_SEED if sampling.seed is None else sampling.seed)
    return values


def _labels() -> dict[str, str]:
    return {**{option.name: option.title for option in SAMPLING_OPTIONS}, SEED_FIELD: SEED_LABEL}


class ChatOptionsScreen(ModalScreen[ChatOptions | None]):
    """Ctrl+S saves, Esc cancels; Tab moves between the fields."""

    HELP_TITLE = "Chat options"
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = keymap.CHAT_OPTIONS

    def __init__(self, system_prompt: str, sampling: Sampling) -> None:
        super().__init__()
        self.system_prompt = system_prompt
        self.sampling = sampling

    def compose(self) -> ComposeResult:
        with Vertical(id="options-box", classes="dialog"):
            yield Label("Chat options  (Ctrl+S saves, Esc cancels)", classes="dialog-title")
            yield Label("System prompt")
            yield SafeTextArea(self.system_prompt, id="options-system", soft_wrap=True)
            with Grid(id="options-grid"):
                labels = _labels()
                for name, value in form_values(self.sampling).items():
                    yield Label(labels[name])
                    yield SafeInput(value, id=f"options-{name}", compact=True)

    def on_mount(self) -> None:
        self.query_one("#options-system", TextArea).focus()

    def on_input_submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        values = {name: self.query_one(f"#options-{name}", Input).value for name in _labels()}
        try:
            sampling = parse_sampling(values)
        except ValueError as exc:
            self.notify(str(exc), title="Chat options", severity="error", markup=False)
            return
        self.dismiss(ChatOptions(self.query_one("#options-system", TextArea).text.strip(), sampling))

    def action_cancel(self) -> None:
        self.dismiss(None)
