"""Every key binding of tuillm, declared once: the app's, each pane's, each widget's and each dialog's.

Each class says ``BINDINGS = keymap.CHAT`` (or its group); F1's help and the README's key table are generated from
``GROUPS`` (``python -m tuillm.tui.keymap --markdown`` rewrites the README's table). A user's ``[keys]`` overrides
go by binding id (``App.set_keymap``): ids never change; an id that did is listed in ``RENAMED``.

One key, one idea, in every pane: ``IDEAS`` below (a Ctrl or F key is never a different thing elsewhere; a test
holds every binding to it). Letters act only where a list or the messages have the focus (never while typing).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding, BindingType

# What each Ctrl and F key means, wherever it works (F1's help and the README list this first).
IDEAS: dict[str, str] = {
    "escape": "stop, cancel, close",
    "ctrl+s": "start, save",
    "ctrl+n": "new (a chat)",
    "ctrl+r": "again: rescan, read again, answer again",
    "ctrl+g": "edit (the last message)",
    "ctrl+f": "find (search the chats)",
    "ctrl+o": "options (of the chat)",
    "ctrl+t": "talk: chat with this model (Models, Train), or pick the chat's model (Chat)",
    "ctrl+l": "the list: show it and go to it, or hide it",
    "ctrl+b": "A/B: the base and the tuned model side by side",
    "ctrl+y": "export (the LoRA adapter as GGUF)",
    "ctrl+q": "quit",
    "f1": "help",
    "f2": "the Chat pane",
    "f3": "the Models pane",
    "f4": "the Convert pane",
    "f5": "the Train pane",
    "f6": "the log",
    "f7": "merge",
    "f8": "measure: the quality sweep (every quant of a source, and the one for this machine)",
    "f9": "settings",
}
# The text fields' own Ctrl keys (Textual's Input and TextArea: line editing and the clipboard): taken by a binding
# of ours, they would do two things depending on the focus. (Ctrl+Y is the editor's redo: export is bound only in
# the Train pane, which has no editor.)
EDITING_KEYS = frozenset({"ctrl+a", "ctrl+c", "ctrl+d", "ctrl+e", "ctrl+k", "ctrl+u", "ctrl+v", "ctrl+w", "ctrl+x",
                          "ctrl+z"})


def _b(keys: str, action: str, description: str, binding_id: str, tooltip: str, *, show: bool = True,
       priority: bool = False) -> Binding:
    return Binding(keys, action, description, show=show, id=binding_id, tooltip=tooltip, priority=priority)


# The panes' switches: F-keys, and alt+<initial> for terminals (or tmux set-ups) that do not pass F-keys through.
# (Not alt+digit: Textual reads ESC+digit as macOS Option characters.) app.PANES gives their order.
PANE_KEYS: dict[str, tuple[str, str]] = {
    "chat": ("f2,alt+c", "Chat"),
    "models": ("f3,alt+m", "Models"),
    "convert": ("f4,alt+o", "Convert"),
    "train": ("f5,alt+t", "Train"),
}

APP: list[BindingType] = [
    _b("f1", "help", "Help", "app.help", "List every key"),
    # Not in the footer: each tab names its key ("Chat F2"), and the footer keeps its room for the pane's keys.
    *(_b(keys, f"show_pane('{pane}')", title, f"app.show_{pane}", f"Show the {title} pane", show=False)
      for pane, (keys, title) in PANE_KEYS.items()),
    _b("f9,alt+s", "settings", "Settings", "app.settings",
       "Model folders, default load and sampling parameters, theme, key overrides", show=False),
    _b("ctrl+q", "quit", "Quit", "app.quit", "Close tuillm and return to the shell", priority=True),
]

CHAT: list[BindingType] = [
    _b("escape", "stop", "Stop", "chat.stop", "Stop the reply, or cancel editing"),
    _b("ctrl+n", "new_chat", "New", "chat.new", "Start a new chat"),
    # Not in the footer (80 columns); F1 lists them.
    _b("ctrl+r", "regenerate", "Again", "chat.regenerate",
       "Answer again the last message, or the selected one (a reply: its question); earlier replies are kept",
       show=False),
    _b("ctrl+g", "edit_last", "Edit last", "chat.edit_last", "Edit the last message and send it again",
       show=False),
    _b("ctrl+o", "options", "Options", "chat.options", "System prompt and sampling parameters"),
    _b("ctrl+t", "pick_model", "Model", "chat.pick_model", "Pick this chat's model (and a LoRA adapter)",
       show=False),
    _b("ctrl+l", "toggle_list", "Chats", "chat.toggle_list",
       "The chat list: show it and go to it; from the list, hide it", show=False),
    _b("ctrl+f", "search", "Search", "chat.search", "Search the messages of every chat and open one", show=False),
    # Branches (panes/chat_branches.py): the letters act in the messages view only, on its selected message.
    _b("left_square_bracket,alt+left", "alt_prev", "Previous alternative", "chat.alt_prev",
       "The earlier reply or edit (‹1/2›) of the selected message, else of the newest that has some", show=False),
    _b("right_square_bracket,alt+right", "alt_next", "Next alternative", "chat.alt_next",
       "The later reply or edit (‹2/2›) of the selected message, else of the newest that has some", show=False),
    _b("f", "fork", "Fork", "chat.fork", "A new chat with the conversation up to the selected message (messages)",
       show=False),
    _b("e", "edit_message", "Edit message", "chat.edit_message",
       "Change the selected message of yours and send it (messages): a new branch, the original kept", show=False),
]

CHAT_LIST: list[BindingType] = [
    _b("n", "new_chat", "New chat", "chat.list_new", "Start a new chat", show=False),
    _b("r", "rename", "Rename", "chat.rename", "Rename the highlighted chat"),
    _b("delete,d", "delete", "Delete", "chat.delete", "Delete the highlighted chat"),
]

CHAT_FILTER: list[BindingType] = [
    _b("slash", "to_filter", "Filter", "chat.filter", "Filter the chat list by title", show=False),
    _b("down", "into_list", "To the list", "chat.filter_to_list", "From the filter into the chat list (or Enter)",
       show=False),
    _b("escape", "clear", "Clear filter", "chat.filter_clear", "Clear the chat list's filter", show=False),
]

CHAT_MESSAGES: list[BindingType] = [
    _b("up", "select(-1)", "Previous message", "chat.previous_message", "Select the message above", show=False),
    _b("down", "select(1)", "Next message", "chat.next_message", "Select the message below", show=False),
    _b("c", "copy_message", "Copy message", "chat.copy_message", "Copy the selected message (OSC 52)"),
    _b("b", "copy_code", "Copy code", "chat.copy_code", "Copy the last code block of the selected message"),
]

MODELS: list[BindingType] = [
    _b("ctrl+r", "refresh", "Refresh", "models.refresh", "Scan the model folders again"),
    _b("slash", "filter", "Filter", "models.filter", "Type to filter the models", show=False),
    _b("i", "details", "Info", "models.details", "All metadata and the chat template of the highlighted model",
       show=False),
    _b("e", "settings", "Load settings", "models.settings",
       "Context, GPU layers, threads, KV cache and flash attention for the highlighted model", show=False),
    _b("a", "add_folder", "Add folder", "models.add_folder", "Add a folder to scan for models (kept in the settings)",
       show=False),
    _b("d,delete", "delete", "Delete", "models.delete", "Delete the highlighted GGUF file, after confirmation",
       show=False),
    _b("c", "convert", "Convert", "models.convert", "Send the highlighted model to the Convert pane", show=False),
    _b("ctrl+t", "chat", "Chat", "models.chat", "Chat with the highlighted model (as Enter on its row)", show=False),
    _b("p", "download", "Download", "models.download",
       "Search the Hugging Face Hub and download a model, the quant that fits (resumes a stopped download)"),
]

CONVERT: list[BindingType] = [
    _b("ctrl+s", "start", "Start", "convert.start", "Write the ticked output types (space ticks a type in the list)"),
    _b("escape", "cancel", "Cancel", "convert.cancel",
       "Stop the job (asks first): the file being written is removed, completed ones are kept"),
    _b("ctrl+r", "refresh", "Rescan", "convert.refresh", "Scan the model folders for sources"),
    _b("f6", "focus_log", "Log", "convert.log", "Go to the log and reports (arrows scroll it)", show=False),
    _b("f8", "sweep", "Sweep", "convert.sweep",
       "Quality sweep: quantize the source to several types, measure each, and recommend the one for this machine"),
]

TRAIN: list[BindingType] = [
    _b("ctrl+s", "start", "Start", "train.start", "Start training with these settings"),
    _b("escape", "cancel", "Cancel", "train.cancel",
       "Stop after the current step and save a checkpoint (asks first; Resume continues it)"),
    _b("f7", "merge", "Merge", "train.merge", "Merge the adapter into the base and write a GGUF of the chosen type"),
    _b("ctrl+y", "export", "Export LoRA", "train.export", "Write the adapter as a GGUF LoRA adapter for llama.cpp",
       show=False),
    _b("ctrl+t", "open_chat", "Chat", "train.chat", "Open the merged model in the Chat pane"),
    _b("ctrl+b", "ab", "A/B", "train.ab", "Send one prompt to the base and the tuned model, side by side",
       show=False),
    _b("ctrl+r", "preview", "Preview", "train.preview", "Read the dataset again and show its first examples",
       show=False),
]

# --- dialogs ---------------------------------------------------------------------------------------------------
HELP: list[BindingType] = [_b("escape,f1,q", "dismiss", "Close help", "help.close", "Close the help")]
SETTINGS: list[BindingType] = [
    _b("ctrl+s", "save", "Save", "settings.save", "Save the settings and apply them"),
    _b("escape", "cancel", "Cancel", "settings.cancel", "Close without saving"),
]
MODEL_DETAILS: list[BindingType] = [
    _b("escape,i,q", "dismiss", "Close", "models.details_close", "Close the details"),
]
MODEL_SETTINGS: list[BindingType] = [
    _b("ctrl+s", "save", "Save", "models.settings_save", "Keep these settings for this model"),
    _b("escape", "cancel", "Cancel", "models.settings_cancel", "Close without saving"),
]
ADD_FOLDER: list[BindingType] = [
    _b("escape", "cancel", "Cancel", "models.add_folder_cancel", "Close without adding"),
]
DOWNLOAD: list[BindingType] = [
    _b("escape", "cancel", "Stop or close", "models.download_cancel",
       "Stop the download (it resumes when chosen again), or close the dialog"),
]
CHAT_OPTIONS: list[BindingType] = [
    _b("ctrl+s", "save", "Save", "chat.options_save", "Save the options for this chat"),
    _b("escape", "cancel", "Cancel", "chat.options_cancel", "Close without saving"),
]
CHAT_SEARCH: list[BindingType] = [
    _b("escape", "cancel", "Close", "chat.search_close", "Close the search"),
    _b("down", "into_results", "To the results", "chat.search_to_results",
       "From the search field into the results (Enter opens the highlighted one)", show=False),
]
RENAME: list[BindingType] = [_b("escape", "cancel", "Cancel", "chat.rename_cancel", "Keep the old title")]
IMPORT_CHAT: list[BindingType] = [_b("escape", "cancel", "Cancel", "chat.import_cancel", "Close without importing")]
EXPORT_CHAT: list[BindingType] = [_b("escape", "cancel", "Cancel", "chat.export_cancel", "Close without exporting")]
CONFIRM: list[BindingType] = [
    _b("y", "answer(True)", "Yes", "dialog.confirm_yes", "Yes, do it"),
    _b("n,escape", "answer(False)", "No", "dialog.confirm_no", "No, leave it"),
]
MEMORY: list[BindingType] = [
    _b("u", "answer('unload')", "Unload", "memory.unload", "Unload the model: free its memory"),
    _b("r", "answer('reload')", "Reload smaller", "memory.reload",
       "Reload the model with half the context (a smaller KV cache)"),
    _b("k,escape", "answer('keep')", "Keep", "memory.keep", "Keep the model as it is"),
]
PICK_MODEL: list[BindingType] = [
    _b("ctrl+s", "pick", "Use", "chat.pick_model_use", "Chat with the highlighted model"),
    _b("escape", "cancel", "Cancel", "chat.pick_model_cancel", "Keep the chat's model"),
]
SERVE_LOG: list[BindingType] = [
    _b("escape", "dismiss", "Close", "serve.log_close", "Close the server's log"),
]
SWEEP_FORM: list[BindingType] = [
    _b("ctrl+s", "start", "Start", "convert.sweep_start", "Start the sweep with these types and context"),
    _b("escape", "cancel", "Cancel", "convert.sweep_cancel", "Close without starting"),
]
AB: list[BindingType] = [
    _b("escape", "close", "Stop or close", "train.ab_close",
       "Stop both replies while they stream; else close the A/B view and free both models"),
]


@dataclass(frozen=True)
class Group:
    title: str  # where the keys work, as F1 and the README name it
    bindings: list[BindingType]


# In the order F1 and the README list them.
GROUPS: tuple[Group, ...] = (
    Group("Everywhere", APP),
    Group("Chat pane", CHAT),
    Group("Chat list", CHAT_LIST),
    Group("Chat list filter", CHAT_FILTER),
    Group("Chat messages", CHAT_MESSAGES),
    Group("Models pane", MODELS),
    Group("Convert pane", CONVERT),
    Group("Train pane", TRAIN),
    Group("Chat options", CHAT_OPTIONS),
    Group("Search chats", CHAT_SEARCH),
    Group("Pick a model", PICK_MODEL),
    Group("Rename a chat", RENAME),
    Group("Import a chat", IMPORT_CHAT),
    Group("Export a chat", EXPORT_CHAT),
    Group("Memory warning", MEMORY),
    Group("Model details", MODEL_DETAILS),
    Group("Model load settings", MODEL_SETTINGS),
    Group("Add a models folder", ADD_FOLDER),
    Group("Download a model", DOWNLOAD),
    Group("Quality sweep", SWEEP_FORM),
    Group("A/B compare", AB),
    Group("Server log", SERVE_LOG),
    Group("Settings", SETTINGS),
    Group("Questions", CONFIRM),
    Group("Help", HELP),
)

# Ids that were renamed: a user's override under the old id still applies (``with_renamed``).
RENAMED: dict[str, str] = {"chat.focus_list": "chat.toggle_list"}


def bindings() -> list[Binding]:
    """Every binding of the table, in GROUPS' order."""
    return [b for group in GROUPS for b in group.bindings if isinstance(b, Binding)]


def by_id() -> dict[str, Binding]:
    return {b.id: b for b in bindings() if b.id}


def group_of(binding_list: list[BindingType]) -> Group | None:
    return next((g for g in GROUPS if g.bindings is binding_list), None)


def with_renamed(keys: dict[str, str]) -> dict[str, str]:
    """A user's overrides with renamed ids translated (the new id wins where both are given)."""
    return {**{RENAMED.get(k, k): v for k, v in keys.items()}, **{k: v for k, v in keys.items() if k not in RENAMED}}


# Textual's key names as keyboards and the README print them (key_overrides reads them back).
KEY_LABELS = {"escape": "Esc", "slash": "/", "delete": "Del", "up": "↑", "down": "↓", "left": "←", "right": "→",
              "enter": "Enter", "tab": "Tab", "space": "Space", "pageup": "PgUp", "pagedown": "PgDn", "home": "Home",
              "end": "End", "backspace": "Backspace", "insert": "Ins",
              "left_square_bracket": "[", "right_square_bracket": "]"}


def key_label(key: str) -> str:
    """One key as printed on keyboards and in the README: "ctrl+r" -> "Ctrl+R", "f2" -> "F2", "escape" -> "Esc"."""
    *mods, last = key.split("+")
    name = KEY_LABELS.get(last) or (last.upper() if len(last) == 1 and mods or re.fullmatch(r"f\d+", last) else last)
    return "+".join([*(m.capitalize() for m in mods), name])


def keys_label(keys: str) -> str:
    """A key list ("f2,alt+c") as "F2, Alt+C"."""
    return ", ".join(key_label(k.strip()) for k in keys.split(",") if k.strip())


def key_hint(binding_id: str) -> str:
    """The default first key of ``binding_id`` as labels and hints print it ("F7")."""
    return key_label(by_id()[binding_id].key.split(",")[0])


def first_key(binding_id: str, overrides: dict[str, str]) -> str:
    """The key that triggers ``binding_id`` first, after the user's overrides: the one tabs and hints show."""
    keys = with_renamed(overrides).get(binding_id) or by_id()[binding_id].key
    return keys.split(",")[0].strip()


def describe(binding: Binding) -> str:
    """What a binding does, in one line: its name and, where it says more, its tooltip."""
    tip = binding.tooltip
    if tip and tip != binding.description:
        # "Rename: rename the highlighted chat"; "A/B …" keeps its capitals.
        return f"{binding.description}: {tip if tip[1:2].isupper() else tip[:1].lower() + tip[1:]}"
    return binding.description or binding.action


def markdown(overrides: dict[str, str] | None = None) -> str:
    """The key table as Markdown: what each Ctrl/F key means, then every binding (keys, where, what, its id)."""
    keymap = with_renamed(overrides or {})
    lines = ["| Key | Means, wherever it works |", "|---|---|"]
    lines += [f"| {key_label(key)} | {idea} |" for key, idea in IDEAS.items()]
    lines += ["", "| Keys | Where | Does | Id (for `[keys]`) |", "|---|---|---|---|"]
    for group in GROUPS:
        for b in group.bindings:
            if isinstance(b, Binding):
                keys = keys_label(keymap.get(b.id or "", b.key)).replace("|", "\\|")
                lines.append(f"| {keys} | {group.title} | {describe(b)} | `{b.id}` |")
    return "\n".join(lines) + "\n"


README_START = "<!-- keys:start (generated by python -m tuillm.tui.keymap --readme README.md; do not edit) -->"
README_END = "<!-- keys:end -->"


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the key table's markers replaced by the generated table."""
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    return readme[:start] + "\n" + markdown() + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuillm.tui.keymap", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the key table as Markdown")
    parser.add_argument("--readme", type=Path, help="rewrite the key table between the markers of this README")
    args = parser.parse_args(argv)
    if args.readme:
        text = args.readme.read_text(encoding="utf-8")
        try:
            new = readme_with_table(text)
        except ValueError:
            print(f"{args.readme}: no key table markers ({README_START} … {README_END})", file=sys.stderr)
            return 1
        from tuillm.core.files import write_atomic  # only for this developer's command

        write_atomic(args.readme, new.encode("utf-8"))
    else:
        sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
