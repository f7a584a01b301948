"""The user's key overrides (the config's ``[keys]``, Settings' "Key overrides") checked against the key map.

Textual takes any text as a key and says nothing: "Ctrl+R" (as the README's table prints it) bound nothing, since
Textual names that key "ctrl+r"; "notakey+++" or ",,," left a binding with no key; an escape sequence went into
a tab's label; a key already bound beside it silently took one of the two away; an override of Tab or Ctrl+C took
the focus or the clipboard from every field. Each override is checked here, once, where it enters (the app's
start, the Settings dialog): a refused one keeps its binding's default keys and is named with the reason.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.keys import Keys, _character_to_key

from tuillm.core.options import MAX_ECHO
from tuillm.core.text import shown
from tuillm.tui import keymap

MODIFIERS = ("ctrl", "alt", "shift", "super", "meta", "hyper")
# Every key name Textual reports (its Keys, the printable ASCII characters' names).
KEY_NAMES = frozenset({k.value.split("+")[-1] for k in Keys if k.value[:1] != "<"} - {"ctrl-at"}
                      | {_character_to_key(chr(c)) for c in range(33, 127)})
# The README's and F1's labels back to Textual's names ("Esc" -> "escape", "/" -> "slash", "PgUp" -> "pageup").
LABELS = {label.lower(): name for name, label in keymap.KEY_LABELS.items()}
# Keys no override may take: Textual's focus keys and Enter, the prompt's new line, the palette, and the text
# fields' own (a binding there would do two things depending on the focus).
RESERVED = {"tab": "moves the focus", "shift+tab": "moves the focus back", "ctrl+i": "is Tab", "enter": "is Enter",
            "ctrl+m": "is Enter", "ctrl+j": "starts a new line in the prompt", "ctrl+p": "opens the command palette",
            "ctrl+q": "quits", **dict.fromkeys(keymap.EDITING_KEYS, "belongs to the text fields (editing, clipboard)")}
EVERYWHERE = "Everywhere"  # the app's group: its keys work in every pane and dialog


def key_name(key: str) -> str | None:
    """``key`` as Textual names it ("Ctrl+R" -> "ctrl+r", "Esc" -> "escape", "/" -> "slash"), or None: no key."""
    key = key.strip()
    *mods, last = key.split("+")
    mods = [m.lower() for m in mods]
    if not last or not key.isprintable() or " " in key or len(set(mods)) < len(mods) or set(mods) - set(MODIFIERS):
        return None
    name = LABELS.get(last.lower()) or (_character_to_key(last.lower() if mods else last) if len(last) == 1
                                        else last.lower())
    return "+".join([*mods, name]) if len(last) == 1 or name in KEY_NAMES else None


def _refusal(binding_id: str, value: str) -> str | None:
    """Why ``value`` cannot be ``binding_id``'s keys, or None."""
    parts = [k.strip() for k in value.split(",") if k.strip()]
    names = [key_name(k) for k in parts]
    if not names or None in names:
        bad = parts[names.index(None)] if None in names else value
        return f"'{shown(bad, MAX_ECHO)}' is not a key (write them as in ctrl+r,f6)"
    taken = [n for n in names if n in RESERVED and not (n == "ctrl+q" and binding_id == "app.quit")]
    if taken:
        return f"{keymap.key_label(taken[0])} is kept: it {RESERVED[taken[0]]}"
    return None


def _together(applied: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, id, id): two bindings that work at once (in one group, or one of them the app's) on one key, with the
    overrides ``applied``."""
    bound: dict[str, list[tuple[str, str]]] = {}  # key -> (id, group)
    for group in keymap.GROUPS:
        for b in group.bindings:
            if isinstance(b, Binding) and b.id:
                for key in applied.get(b.id, b.key).split(","):
                    bound.setdefault(key.strip(), []).append((b.id, group.title))
    return [(key, one, other) for key, ids in bound.items() for n, (one, one_group) in enumerate(ids)
            for other, other_group in ids[n + 1:] if one_group == other_group or EVERYWHERE in (one_group, other_group)]


# Pairs the table itself binds to one key on purpose (Help's F1 closes what the app's F1 opened).
_DEFAULT = frozenset(frozenset((one, other)) for _key, one, other in _together({}))


def check(keys: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The overrides that apply (renamed ids translated, keys as Textual names them; an id no binding has is kept,
    a later version's perhaps) and, by id, why each other one is refused: its binding keeps its default keys."""
    table = keymap.by_id()
    applied: dict[str, str] = {}
    refused: dict[str, str] = {}
    for binding_id, value in keymap.with_renamed(keys).items():
        if binding_id not in table:
            applied[binding_id] = value
        elif why := _refusal(binding_id, value):
            refused[binding_id] = why
        else:
            applied[binding_id] = ",".join(dict.fromkeys(n for k in value.split(",") if (n := key_name(k))))
    while clashes := [c for c in _together(applied) if frozenset(c[1:]) not in _DEFAULT]:
        key, one, other = clashes[0]
        mine, other = (other, one) if other in applied else (one, other)  # the later override gives way
        del applied[mine]
        where = next(g.title for g in keymap.GROUPS for b in g.bindings if isinstance(b, Binding) and b.id == other)
        refused[mine] = f"{keymap.key_label(key)} is {other}'s key already ({where})"
    return applied, refused


def problems(applied: dict[str, str], refused: dict[str, str]) -> list[str]:
    """One line per override that does nothing (``check``'s): refused, with why and the keys kept; then the ids no
    binding has."""
    table = keymap.by_id()
    lines = [f'keys."{shown(i, MAX_ECHO)}": {why}; using {keymap.keys_label(table[i].key)}' for i, why in
             refused.items()]
    unknown = [shown(i, MAX_ECHO) for i in applied if i not in table]
    return lines + ([f"keys: no binding has the id {', '.join(unknown)}: that override does nothing"] if unknown
                    else [])
