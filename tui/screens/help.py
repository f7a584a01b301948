"""F1: every key, generated from the key map (tui/keymap.py) with the user's overrides: first the keys that work
where F1 was pressed (the focused widget's, its pane's, the app's, and the editing keys of Textual's own widgets),
then the rest of the table. Rows wrap, so it reads at 80 columns without scrolling sideways."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from tuillm.tui import keymap

# How the built-in widgets whose keys show up here are called for the user.
WIDGET_NAMES = {"DataTable": "table", "Input": "text field", "TextArea": "text editor", "Tabs": "tab bar"}
KEY_COLUMN = 14  # "Ctrl+R, Alt+C" fits; longer key lists wrap


@dataclass(frozen=True)
class BindingRow:
    keys: str
    description: str
    where: str  # the key map group's title, or the built-in widget's name
    here: bool  # works where F1 was pressed
    binding_id: str = ""  # its id in the key map ("" for a key of Textual's own widgets)


def _widget_name(node: object) -> str:
    title = getattr(node, "HELP_TITLE", None)  # ours say how they are called (the chat's "Prompt")
    if isinstance(title, str):
        return title
    # Ours subclass Textual's (the models table is a DataTable): named by the built-in widget they are.
    return next((WIDGET_NAMES[c.__name__] for c in type(node).__mro__ if c.__name__ in WIDGET_NAMES),
                type(node).__name__)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _active(app: App, screen: Screen) -> tuple[list[str], dict[str, list[str]], list[BindingRow]]:
    """What works on ``screen`` now: the groups of the table (binding chain order, focused widget first), the keys
    bound to each id (as remapped), and the rows of Textual's own widgets' keys."""
    groups: list[str] = []
    keys: dict[str, list[str]] = {}
    builtin: dict[tuple[str, str], tuple[Binding, list[str]]] = {}
    table = keymap.by_id()
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.id in table:
            group = next(g.title for g in keymap.GROUPS if table[binding.id] in g.bindings)
            if group not in groups:
                groups.append(group)
            keys.setdefault(binding.id, []).append(binding.key)
        else:  # a key of Textual's own widget (a text field's editing keys, the palette's Ctrl+P)
            where = "Everywhere" if active.node is app else _widget_name(active.node)
            builtin.setdefault((where, binding.action), (binding, []))[1].append(app.get_key_display(binding))
    rows = [BindingRow(", ".join(ks), _capital(keymap.describe(b)), where, True)
            for (where, _), (b, ks) in builtin.items()]
    return groups, keys, rows


def binding_rows(app: App, screen: Screen, overrides: dict[str, str] | None = None) -> list[BindingRow]:
    """Every key: the groups active on ``screen`` and Textual's own widgets' keys there first, then all other
    groups of the key map, in its order; keys as ``overrides`` (the config's ``[keys]``) make them."""
    here, bound, builtin = _active(app, screen)
    remapped = keymap.with_renamed(overrides or {})
    by_title = {g.title: g for g in keymap.GROUPS}

    def group_rows(title: str) -> list[BindingRow]:
        return [BindingRow(keymap.keys_label(",".join(bound[b.id]) if b.id in bound else remapped.get(b.id, b.key)),
                           keymap.describe(b), title, title in here, b.id)
                for b in by_title[title].bindings if isinstance(b, Binding) and b.id]

    rows = [row for title in here for row in group_rows(title)] + builtin
    return rows + [row for g in keymap.GROUPS if g.title not in here for row in group_rows(g.title)]


def _table(rows: list[BindingRow]) -> Table:
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1, 0, 0))
    table.add_column(width=KEY_COLUMN, style="bold", overflow="fold")
    table.add_column(ratio=1, overflow="fold")
    for row in rows:
        table.add_row(Text(row.keys), Text(row.description))
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help-box { width: 96%; max-width: 100; height: 92%; border: round $accent; background: $surface; padding: 0 1; }
    #help-title { text-style: bold; }
    #help-scroll { height: 1fr; }
    .help-part { text-style: bold reverse; width: 1fr; padding: 0 1; margin-top: 1; }
    .help-heading { text-style: bold; color: $accent; margin-top: 1; }
    .help-rows { width: 1fr; }
    """
    BINDINGS = keymap.HELP

    def __init__(self, rows: list[BindingRow]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("Keys  (Esc or F1 closes; ↑/↓, PgUp/PgDn scroll)", id="help-title")
            with VerticalScroll(id="help-scroll"):
                sections: dict[tuple[bool, str], list[BindingRow]] = {}
                for row in self.rows:
                    sections.setdefault((row.here, row.where), []).append(row)
                last_here: bool | None = None
                for (here, where), rows in sections.items():
                    if here != last_here:
                        yield Label("Here" if here else "Elsewhere", classes="help-part")
                        last_here = here
                    yield Label(_capital(where), classes="help-heading")
                    yield Static(_table(rows), classes="help-rows")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()
