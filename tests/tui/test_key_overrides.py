"""The user's key overrides checked where they enter (tui/key_overrides.py): keys as the README's table prints
them work, and a key that is none, one the text fields or Textual keep, or one another binding beside it has is
refused by its id, in one notification at the start, its binding keeping its default keys."""

from __future__ import annotations

from pathlib import Path

from tests.tui.app_helpers import make_app, run_async
from tests.tui.chat_helpers import record_notifications
from tuillm.core.settings import Config
from tuillm.tui import key_overrides, keymap
from tuillm.tui.screens.help import HelpScreen, binding_rows


def test_keys_are_named_as_textual_names_them() -> None:
    # Textual takes any text as a key and matches none of these as written: "Ctrl+R" never fired.
    named = {"Ctrl+R": "ctrl+r", "Esc": "escape", "/": "slash", " F10 ": "f10", "PgUp": "pageup",
             "alt+Left": "alt+left", "Ctrl+[": "ctrl+left_square_bracket", "x": "x", "X": "X", "ctrl+X": "ctrl+x",
             "shift+tab": "shift+tab"}
    assert {key: key_overrides.key_name(key) for key in named} == named
    for garbage in ("notakey+++", "", "ctrl+", "+", "\x1b[2J", "ctrl+ctrl+a", "hyper+space+f1", "f 1", "fn+f1",
                    "ctrl+notakey", "a\x00"):
        assert key_overrides.key_name(garbage) is None, garbage
    # Every key of the table is written as Textual names it already.
    assert all(key_overrides.key_name(k) == k for b in keymap.bindings() for k in b.key.split(","))


def test_refused_overrides_keep_their_default_keys() -> None:
    applied, refused = key_overrides.check({
        "app.help": "F10, ,f10", "app.settings": ",,,", "chat.fork": "\x1b[2J", "chat.new": "tab",
        "chat.search": "ctrl+c", "convert.start": "ctrl+q", "app.quit": "ctrl+q,f12", "app.show_convert": "f3",
        "chat.focus_list": "ctrl+l,alt+l", "nope.id": "x"})
    assert applied == {"app.help": "f10", "app.quit": "ctrl+q,f12", "chat.toggle_list": "ctrl+l,alt+l", "nope.id": "x"}
    assert refused == {
        "app.settings": "',,,' is not a key (write them as in ctrl+r,f6)",
        "chat.fork": "'\\x1b[2J' is not a key (write them as in ctrl+r,f6)",
        "chat.new": "Tab is kept: it moves the focus",
        "chat.search": "Ctrl+C is kept: it belongs to the text fields (editing, clipboard)",
        "convert.start": "Ctrl+Q is kept: it quits",
        "app.show_convert": "F3 is app.show_models's key already (Everywhere)"}
    # Two panes' keys swapped is no clash; a key of the app's on a pane's is (F1 is the app's help everywhere).
    assert key_overrides.check({"app.show_chat": "f3", "app.show_models": "f2"}) == (
        {"app.show_chat": "f3", "app.show_models": "f2"}, {})
    assert key_overrides.check({"chat.new": "f1"})[1] == {"chat.new": "F1 is app.help's key already (Everywhere)"}
    assert key_overrides.check({"models.refresh": "ctrl+n"})[1] == {}  # Chat's Ctrl+N is not the Models pane's


@run_async
async def test_bad_overrides_are_reported_at_the_start_and_the_good_ones_work(tmp_path: Path) -> None:
    config = Config(keys={"app.help": "F10", "app.show_chat": "\x1b[2J", "app.show_convert": "f3", "chat.new": "tab",
                          "nope.id": "x"})
    app = make_app([tmp_path], config=config)
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        assert seen == ["Config: " + "; ".join([
            "keys.\"app.show_chat\": '\\x1b[2J' is not a key (write them as in ctrl+r,f6); using F2, Alt+C",
            'keys."chat.new": Tab is kept: it moves the focus; using Ctrl+N',
            'keys."app.show_convert": F3 is app.show_models\'s key already (Everywhere); using F4, Alt+O',
            "keys: no binding has the id nope.id: that override does nothing"])]
        assert app.session.config.keys == {"app.help": "f10", "nope.id": "x"}
        tabs = app.query_one("#panes")
        assert [str(tabs.get_tab(p).label) for p in ("chat", "convert")] == ["Chat F2", "Convert F4"]
        await pilot.press("f4")
        assert app.current_pane_id() == "convert"
        await pilot.press("f10")  # "F10", as the README's table prints it
        assert isinstance(app.screen, HelpScreen)
        rows = {row.binding_id: row.keys for row in binding_rows(app, app.screen, app.session.config.keys)}
        assert rows["app.help"] == "F10" and rows["app.show_chat"] == "F2, Alt+C"


def test_the_table_has_no_clash_of_its_own_but_help_s_f1() -> None:
    # The one key the table binds twice where both work at once, on purpose: F1 opens the help, and closes it.
    assert key_overrides._DEFAULT == {frozenset({"app.help", "help.close"})}
