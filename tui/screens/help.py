"""F1: a modal listing every key binding active where F1 was pressed, read from Textual's binding chain."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label

from tuillm.tui import keymap

# How the built-in widgets whose keys show up here are called for the user.
WIDGET_NAMES = {"DataTable": "table", "Input": "text field", "TextArea": "text editor", "Tabs": "tab bar"}


@dataclass(frozen=True)
class BindingRow:
    keys: str
    description: str
    where: str


def _where(node: object, app: App) -> str:
    if node is app:
        return "everywhere"
    title = getattr(node, "HELP_TITLE", None)
    if isinstance(title, str):
        return title
    if isinstance(node, Screen):
        return "screen"
    return WIDGET_NAMES.get(type(node).__name__, type(node).__name__)


def _in_footer(binding: Binding) -> bool:
    # The footer shows the palette key on its right although its binding is not marked "show".
    return binding.show or binding.action == "command_palette"


def _from_textual(node: object, binding: Binding) -> bool:
    """Whether ``binding`` is declared by one of Textual's own classes (inherited, e.g. a TextArea's keys)."""
    for cls in type(node).__mro__:
        for declared in cls.__dict__.get("BINDINGS", ()):
            action = declared.action if isinstance(declared, Binding) else declared[1]
            if action == binding.action:
                return cls.__module__.startswith("textual.")
    return False


def binding_rows(app: App, screen: Screen) -> list[BindingRow]:
    """The active bindings of ``screen`` (focused widget, its parents, the screen, the app), one row per action
    and place, with all keys that trigger it, the footer's key first."""
    grouped: dict[tuple[int, str], tuple[object, Binding, list[str]]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        slot = (id(active.node), binding.action)
        if slot in grouped:
            grouped[slot][2].append(app.get_key_display(binding))
        else:
            grouped[slot] = (active.node, binding, [app.get_key_display(binding)])
    rows = []
    # The keys the footer shows come first, then tuillm's own (panes, screens, the app), then the editing keys of
    # Textual's built-in widgets (a text field alone has dozens); each group in the binding chain's order
    # (focused widget first, app-wide last).
    ordered = sorted(grouped.values(), key=lambda item: (not _in_footer(item[1]), _from_textual(item[0], item[1])))
    for node, binding, keys in ordered:
        description = binding.description or binding.tooltip or binding.action.replace("_", " ")
        if binding.tooltip and binding.description and binding.tooltip != binding.description:
            description = f"{binding.description}: {binding.tooltip}"
        rows.append(BindingRow(", ".join(keys), description[:1].upper() + description[1:], _where(node, app)))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = keymap.HELP

    def __init__(self, rows: list[BindingRow]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("Keys  (Esc or F1 closes)", id="help-title")
            table: DataTable[str] = DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "Action", "Where")
            for row in self.rows:
                table.add_row(row.keys, row.description, row.where)
            yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
