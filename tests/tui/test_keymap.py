"""The key map (tui/keymap.py): every binding declared there once, one idea per Ctrl/F key, ids kept, the README's
table generated from it, and a user's override by id (also by a renamed id) taking effect in the app."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from textual.binding import Binding
from textual.widgets import Input, TextArea

import tuillm.tui as tui_package
from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tests.tui.fake_backend import FakeBackend
from tuillm.core.settings import Config
from tuillm.tui import keymap

ROOT = Path(__file__).resolve().parents[2]
TUI = ROOT / "tui"

# The ids users may have in their config's [keys]: they must keep working (kept, or listed in keymap.RENAMED).
IDS_BEFORE_THE_TABLE = {
    "app.help", "app.show_chat", "app.show_models", "app.show_convert", "app.show_train", "app.settings", "app.quit",
    "chat.stop", "chat.new", "chat.regenerate", "chat.edit_last", "chat.options", "chat.focus_list",
    "chat.list_new", "chat.rename", "chat.delete", "chat.previous_message", "chat.next_message",
    "chat.copy_message", "chat.copy_code", "models.refresh", "models.filter", "models.details", "models.settings",
    "models.add_folder", "models.delete", "models.convert", "convert.start", "convert.cancel", "convert.refresh",
    "convert.log", "train.start", "train.cancel", "train.merge", "train.export", "train.chat", "train.ab",
    "train.preview", "help.close", "settings.save", "settings.cancel", "models.details_close",
    "models.settings_save", "models.settings_cancel", "models.add_folder_cancel", "chat.options_save",
    "chat.options_cancel", "chat.rename_cancel", "dialog.confirm_yes", "dialog.confirm_no", "memory.unload",
    "memory.reload", "memory.keep", "train.ab_close",
}


def _our_classes() -> list[type]:
    classes = []
    for info in pkgutil.walk_packages(tui_package.__path__, "tuillm.tui."):
        if info.name.endswith("__main__"):
            continue  # running it is the CLI
        module = importlib.import_module(info.name)
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == info.name]
    return classes


def test_no_binding_is_declared_outside_the_table() -> None:
    offenders = []
    for path in TUI.rglob("*.py"):
        if path.name == "keymap.py" and path.parent == TUI:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            if func is not None and getattr(func, "id", getattr(func, "attr", "")) == "Binding":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"Binding(...) outside tui/keymap.py (declare it there, in its group): {offenders}"


def test_every_class_of_ours_takes_its_bindings_from_the_table() -> None:
    loose = [f"{c.__module__}.{c.__qualname__}" for c in _our_classes()
             if "BINDINGS" in c.__dict__ and keymap.group_of(c.__dict__["BINDINGS"]) is None]
    assert not loose, f"BINDINGS not from a keymap group (write BINDINGS = keymap.<GROUP>): {loose}"


def test_ids_are_unique_and_the_old_ones_still_work() -> None:
    ids = [b.id for b in keymap.bindings()]
    assert all(ids) and len(ids) == len(set(ids))
    missing = {i for i in IDS_BEFORE_THE_TABLE if i not in ids and keymap.RENAMED.get(i) not in ids}
    assert not missing, f"ids users may override are gone: {sorted(missing)}"


def test_one_idea_per_ctrl_and_f_key() -> None:
    for b in keymap.bindings():
        for key in b.key.split(","):
            if key.startswith("ctrl+") or re.fullmatch(r"f\d+", key):
                assert key in keymap.IDEAS, f"{b.id}: {key} means nothing yet: add its idea to keymap.IDEAS"
                assert key not in keymap.EDITING_KEYS, f"{b.id}: {key} edits text in a text field"
    # The text fields' own keys are what EDITING_KEYS says (a Textual upgrade that adds one is noticed here).
    editing = {k for w in (Input, TextArea) for b in w.BINDINGS if isinstance(b, Binding)
               for k in b.key.split(",") if k.startswith("ctrl+") and k.count("+") == 1}
    assert keymap.EDITING_KEYS <= editing | {"ctrl+c"}
    assert not (editing - {"ctrl+y"}) & set(keymap.IDEAS), "a Ctrl key of ours is a text field's editing key"


def test_the_same_ctrl_key_is_the_same_idea_in_every_pane() -> None:
    # The conflicts the issue found, resolved: each of these keys now names one idea in the table.
    by_key: dict[str, set[str]] = {}
    for b in keymap.bindings():
        for key in b.key.split(","):
            by_key.setdefault(key, set()).add(b.id or "")
    assert by_key["ctrl+g"] == {"chat.edit_last"}
    assert by_key["ctrl+n"] == {"chat.new"}
    assert by_key["ctrl+o"] == {"chat.options"}
    assert by_key["ctrl+l"] == {"chat.toggle_list"}
    assert by_key["ctrl+r"] == {"chat.regenerate", "models.refresh", "convert.refresh", "train.preview"}


def test_key_labels() -> None:
    assert keymap.keys_label("f2,alt+c") == "F2, Alt+C"
    assert keymap.keys_label("ctrl+r") == "Ctrl+R"
    assert keymap.keys_label("escape,i,q") == "Esc, i, q"
    assert keymap.keys_label("slash") == "/"
    assert keymap.key_hint("train.merge") == "F7"


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == keymap.readme_with_table(readme), (
        "README.md's key table differs from tui/keymap.py's: run `python -m tuillm.tui.keymap --readme README.md`")


def test_the_readme_writer_replaces_only_the_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{keymap.README_START}\nold table\n{keymap.README_END}\nafter\n", encoding="utf-8")
    assert keymap.main(["--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"before\n{keymap.README_START}\n| Key |") and text.endswith(f"{keymap.README_END}\nafter\n")
    assert "old table" not in text and "`chat.toggle_list`" in text
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary left beside it
    (tmp_path / "plain.md").write_text("no markers\n", encoding="utf-8")
    assert keymap.main(["--readme", str(tmp_path / "plain.md")]) == 1


def test_renamed_ids_translate_and_the_new_id_wins() -> None:
    assert keymap.with_renamed({"chat.focus_list": "f8"}) == {"chat.toggle_list": "f8"}
    assert keymap.with_renamed({"chat.focus_list": "f8", "chat.toggle_list": "f10"}) == {"chat.toggle_list": "f10"}


@run_async
async def test_overrides_by_id_work_in_the_app(tmp_path: Path) -> None:
    # An old id (renamed) and a current one: both keys act, and the tab shows the overridden pane key.
    config = Config(keys={"chat.focus_list": "f8", "app.show_models": "f11,alt+m"})
    app = make_app([tmp_path], config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f11")
        assert app.current_pane_id() == "models"
        assert "Models F11" in str(app.query_one("#panes").get_tab("models").label)
        await pilot.press("f2", "f8")
        assert app.focused is not None and app.focused.id == "chat-list"


@run_async
async def test_ctrl_t_chats_with_the_model_in_models_as_in_train(tmp_path: Path) -> None:
    # Ctrl+T is "talk to this model" wherever a model is at hand: in Models the highlighted row (as Enter).
    app = make_app([tmp_path], chat_backend=FakeBackend)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("slash", *"demo")  # from the filter, too
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.current_pane_id() == "chat"
        assert app.query_one("#pane-chat").model_name == "demo"
