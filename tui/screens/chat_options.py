"""A chat's options: its system prompt and sampling (Ctrl+S saves, Esc cancels)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, TextArea

from tuillm.core.llama.options import Sampling

# (field, label, type, lowest allowed value)
SAMPLING_FIELDS: tuple[tuple[str, str, type, float], ...] = (
    ("temperature", "Temperature", float, 0.0),
    ("top_p", "Top p", float, 0.0),
    ("top_k", "Top k", int, 0),
    ("min_p", "Min p", float, 0.0),
    ("repeat_penalty", "Repeat penalty", float, 0.0),
    ("max_tokens", "Max tokens", int, 1),
    ("seed", "Seed (-1 random)", int, -1),
)


@dataclass(frozen=True)
class ChatOptions:
    system_prompt: str
    sampling: Sampling


def parse_sampling(values: dict[str, str]) -> Sampling:
    """The form's text fields as ``Sampling``; a ValueError names the first bad field."""
    parsed: dict[str, float | int | None] = {}
    for name, label, kind, lowest in SAMPLING_FIELDS:
        text = values.get(name, "").strip()
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{label}: {text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < lowest:
            raise ValueError(f"{label}: must be at least {lowest:g}")
        parsed[name] = value
    if parsed["seed"] == -1:
        parsed["seed"] = None
    return Sampling(**parsed)  # type: ignore[arg-type]


class ChatOptionsScreen(ModalScreen[ChatOptions | None]):
    """Ctrl+S saves, Esc cancels; Tab moves between the fields."""

    HELP_TITLE = "Chat options"
    BINDINGS: list[BindingType] = [
        Binding("ctrl+s", "save", "Save", id="chat.options_save", tooltip="Save the options for this chat"),
        Binding("escape", "cancel", "Cancel", id="chat.options_cancel", tooltip="Close without saving"),
    ]

    def __init__(self, system_prompt: str, sampling: Sampling) -> None:
        super().__init__()
        self.system_prompt = system_prompt
        self.sampling = sampling

    def compose(self) -> ComposeResult:
        with Vertical(id="options-box", classes="dialog"):
            yield Label("Chat options  (Ctrl+S saves, Esc cancels)", classes="dialog-title")
            yield Label("System prompt")
            yield TextArea(self.system_prompt, id="options-system", soft_wrap=True)
            with Grid(id="options-grid"):
                for name, label, _kind, _lowest in SAMPLING_FIELDS:
                    value = getattr(self.sampling, name)
                    yield Label(label)
                    yield Input("-1" if value is None else str(value), id=f"options-{name}", compact=True)

    def on_mount(self) -> None:
        self.query_one("#options-system", TextArea).focus()

    def on_input_submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        values = {name: self.query_one(f"#options-{name}", Input).value for name, *_ in SAMPLING_FIELDS}
        try:
            sampling = parse_sampling(values)
        except ValueError as exc:
            self.notify(str(exc), title="Chat options", severity="error", markup=False)
            return
        self.dismiss(ChatOptions(self.query_one("#options-system", TextArea).text.strip(), sampling))

    def action_cancel(self) -> None:
        self.dismiss(None)
