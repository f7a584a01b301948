"""The Settings screen (F9): edit, save, apply at once, and find it again after a restart; a malformed file."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import Input, Label, Select, TextArea

from tests.tui.app_helpers import make_app, run_async, until, wait_for_catalog
from tests.tui.chat_helpers import chat_pane, record_notifications
from tuillm.core.settings import load_config
from tuillm.tui.screens.settings import SettingsScreen, parse_keys

SIZE = (80, 24)


async def open_settings(pilot) -> SettingsScreen:
    await pilot.press("f9")
    assert isinstance(pilot.app.screen, SettingsScreen)
    return pilot.app.screen


@run_async
async def test_a_saved_setting_applies_now_and_after_a_restart(tmp_path: Path) -> None:
    file = tmp_path / "tuillm.toml"
    file.write_text('# mine\nlater = "kept"\n')
    models = tmp_path / "models"
    models.mkdir()
    app = make_app([models], config=load_config(file))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        screen = await open_settings(pilot)
        assert "models.refresh = ctrl+r" in str(screen.query_one("#settings-binding-ids", Label).content)
        screen.query_one("#settings-load-ctx", Input).value = "2048"
        screen.query_one("#settings-sampling-temperature", Input).value = "0.2"
        screen.query_one("#settings-theme", Select).value = "nord"
        screen.query_one("#settings-keys", TextArea).text = "models.refresh = f6\n"
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, SettingsScreen)
        await wait_for_catalog(pilot)  # saving refreshes the Models pane: its estimates use the load defaults
        # Applied at once: the theme, the new key, the context of the estimates, the sampling of new chats.
        assert app.theme == "nord"
        assert "est. at 2K ctx" in str(app.query_one("#models-summary", Label).content)
        assert chat_pane(app).draft_sampling.temperature == 0.2
        pane = app.query_one("#pane-models")
        before = pane.result
        await pilot.press("f6")
        await wait_for_catalog(pilot)
        assert pane.result is not before

    saved = file.read_text()
    assert 'later = "kept"' in saved  # the user's own key survives the rewrite
    again = make_app([models], config=load_config(file))
    async with again.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert again.theme == "nord"
        assert "est. at 2K ctx" in str(again.query_one("#models-summary", Label).content)
        assert chat_pane(again).draft_sampling.temperature == 0.2
        screen = await open_settings(pilot)
        assert screen.query_one("#settings-load-ctx", Input).value == "2048"


@run_async
async def test_bad_fields_are_reported_and_nothing_is_saved(tmp_path: Path) -> None:
    file = tmp_path / "tuillm.toml"
    app = make_app([tmp_path], config=load_config(file))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        seen = record_notifications(app)
        await pilot.press("ctrl+p", *"settings")  # the command palette has it too
        hits = app.screen.query_one(CommandList)
        await until(pilot, lambda: hits.option_count > 0, "the palette's search")  # it runs in a worker
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#settings-sampling-top_p", Input).value = "1.5"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SettingsScreen) and any("Top p: must be" in text for text in seen)
        screen.query_one("#settings-sampling-top_p", Input).value = "0.9"
        screen.query_one("#settings-keys", TextArea).text = "just words\n"
        await pilot.press("ctrl+s")
        assert any("line 1" in text for text in seen)
        await pilot.press("escape")
        assert not isinstance(app.screen, SettingsScreen) and not file.exists()
        # An id no binding has is kept, with a warning: most likely a typo.
        screen = await open_settings(pilot)
        screen.query_one("#settings-keys", TextArea).text = "models.refrsh = f7\n"
        await pilot.press("ctrl+s")
        assert any("no binding has the id models.refrsh" in text for text in seen)
        assert load_config(file).keys == {"models.refrsh": "f7"}


@run_async
async def test_malformed_config_names_its_line_and_the_defaults_run(tmp_path: Path) -> None:
    file = tmp_path / "tuillm.toml"
    file.write_text('[load]\nctx = 2048\n[ui]\ntheme = "nord\n')
    app = make_app([tmp_path], config=load_config(file))
    seen = record_notifications(app)  # before the start: the app reports it on mount
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert any(str(file) in text and "line 4" in text and "using defaults" in text for text in seen)
        assert "est. at 4K ctx" in str(app.query_one("#models-summary", Label).content)  # not the file's 2048


@run_async
async def test_an_unknown_theme_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "tuillm.toml"
    file.write_text('[ui]\ntheme = "no-such-theme"\n')
    app = make_app([tmp_path], config=load_config(file))
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True):
        assert any("no-such-theme" in text for text in seen)
        assert app.theme != "no-such-theme"


def test_key_override_lines() -> None:
    assert parse_keys('# comment\n\nmodels.refresh = f6\n"chat.stop" = "escape,ctrl+c"\n') == {
        "models.refresh": "f6", "chat.stop": "escape,ctrl+c"}


@pytest.mark.slow
def test_tuillm_chat_takes_the_configured_defaults_and_flags_win(tmp_path: Path) -> None:
    """The CLI and the Chat pane share core.config.load_options_for / sampling_defaults; a flag overrides."""
    file = tmp_path / "tuillm.toml"
    file.write_text("[load]\nctx = 512\n[sampling]\ntemperature = 0.0\nmax_tokens = 3\n")
    tuillm = str(Path(sys.executable).with_name("tuillm"))

    def generated(*flags: str) -> int:
        proc = subprocess.run([tuillm, "--config", str(file), "chat", "demo", "--prompt", "Count from 1 to 30.",
                               "--json", *flags], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["stats"]["generated_tokens"]

    assert generated() == 3  # greedy counting goes on: only the configured limit stops it
    assert generated("--max-tokens", "6") == 6


@run_async
async def test_the_file_the_flags_and_the_dialogs_refuse_a_value_in_the_same_words(tmp_path: Path) -> None:
    """Load and sampling values are checked once, by core.llama.options' declarations: top_p = 3 and a context
    of 8 are refused by the settings file, `tuillm chat`'s flags, the Settings screen and the model settings
    dialog, each saying what the declaration expects."""
    import os

    from tuillm.core.llama.options import LOAD_OPTIONS, SAMPLING_OPTIONS
    from tuillm.core.options import option_map
    from tuillm.tui.screens.model_settings import ModelSettingsScreen

    top_p = f"must be {option_map(SAMPLING_OPTIONS)['top_p'].expected()}"
    context = option_map(LOAD_OPTIONS)["n_ctx"]
    ctx = f"must be {context.expected()}"
    file = tmp_path / "tuillm.toml"
    file.write_text("[load]\nctx = 8\n[sampling]\ntop_p = 3\n")
    problem = load_config(file).problem
    assert f"sampling.top_p: {top_p}, not 3" in problem and f"load.ctx: {ctx}, not 8" in problem

    tuillm = str(Path(sys.executable).with_name("tuillm"))
    for flags, words in ((["--top-p", "3"], f"--top-p: {top_p}, not '3'"), (["--ctx", "8"], f"--ctx: {ctx}, not '8'")):
        proc = subprocess.run([tuillm, "chat", "demo", "-p", "hi", *flags], capture_output=True, text=True,
                              timeout=120, env=os.environ.copy())
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"tuillm: {words}"], proc.stderr

    app = make_app([tmp_path])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        seen = record_notifications(app)
        screen = await open_settings(pilot)
        screen.query_one("#settings-sampling-top_p", Input).value = "3"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SettingsScreen) and seen[-1].endswith(f": Top p: {top_p}, not '3'")
        screen.query_one("#settings-sampling-top_p", Input).value = "0.9"
        screen.query_one("#settings-load-ctx", Input).value = "8"
        await pilot.press("ctrl+s")
        assert seen[-1].endswith(f": {context.title}: {ctx}, not '8'")
        await pilot.press("escape", "e")  # the demo's own load settings
        assert isinstance(app.screen, ModelSettingsScreen)
        app.screen.query_one("#ms-ctx", Input).value = "8"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ModelSettingsScreen)
        assert seen[-1].endswith(f": {context.title}: {ctx}, not '8'")


@run_async
async def test_model_folders_are_checked_as_the_add_dialog_checks_them(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A file or a missing folder typed into Model folders is refused, naming its line, in the add dialog's words
    (Models, a); nothing is saved. A folder the config had is kept while missing (a default not made yet); a new
    relative folder is saved absolute."""
    from tuillm.tui.screens.add_folder import AddFolderScreen

    monkeypatch.chdir(tmp_path)
    models, later, notes = tmp_path / "models", tmp_path / "not-made-yet", tmp_path / "notes.txt"
    models.mkdir()
    (tmp_path / "more").mkdir()
    notes.write_text("not a folder")
    file = tmp_path / "tuillm.toml"
    file.write_text(f'[models]\ndirs = ["{models}", "{later}"]\n')
    app = make_app([models], config=load_config(file))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        seen = record_notifications(app)
        screen = await open_settings(pilot)
        dirs = screen.query_one("#settings-dirs", TextArea)
        for line, why in ((str(notes), f"{notes}: not a folder"),
                          ("relative/nothere", "relative/nothere: no such folder")):
            dirs.text = f"{models}\n{later}\n\n{line}\n"
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, SettingsScreen) and seen[-1] == f"Settings: Model folders, line 4: {why}"
        assert load_config(file).model_dirs == [models, later]  # nothing saved
        dirs.text = f"{models}\n{later}\nmore\n"
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, SettingsScreen)
        assert load_config(file).model_dirs == [models, later, tmp_path / "more"]
        # The add dialog refuses the file in the same words.
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("a")
        assert isinstance(app.screen, AddFolderScreen)
        await pilot.press(*str(notes), "enter")
        assert isinstance(app.screen, AddFolderScreen) and seen[-1] == f"Add folder: {notes}: not a folder"


@run_async
async def test_a_model_folder_the_system_will_not_look_at_is_refused_not_a_crash(tmp_path: Path) -> None:
    # "~models" named a user there is none of (Path.expanduser's RuntimeError); a name too long made is_dir raise.
    file = tmp_path / "tuillm.toml"
    long = tmp_path / ("x" * 300)
    app = make_app([tmp_path], config=load_config(file))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        seen = record_notifications(app)
        screen = await open_settings(pilot)
        for line, why in (("~no-such-user-tuillm", "~no-such-user-tuillm: no such folder"),
                          (str(long), f"{str(long)[:120]}…: file name too long")):  # the path cut
            screen.query_one("#settings-dirs", TextArea).text = f"{tmp_path}\n{line}\n"
            await pilot.press("ctrl+s")
            assert app.screen is screen and seen[-1] == f"Settings: Model folders, line 2: {why}"
        assert not file.exists()


@run_async
async def test_saving_the_dialog_keeps_relative_and_tilde_folders_as_written(tmp_path: Path) -> None:
    # The dialog lists the folders absolute; a save of any field wrote them so, over the user's "models" and "~/m".
    conf = tmp_path / "conf"
    (conf / "models").mkdir(parents=True)
    file = conf / "tuillm.toml"
    file.write_text('[models]\ndirs = ["models", "~/m"]\n[model."models/a.gguf"]\nctx = 1024\n')
    more = tmp_path / "more"
    more.mkdir()
    app = make_app([tmp_path], config=load_config(file))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_settings(pilot)
        dirs = screen.query_one("#settings-dirs", TextArea)
        assert dirs.text == f"{conf / 'models'}\n{Path.home() / 'm'}"  # "~/m" not made yet: kept while missing
        screen.query_one("#settings-load-ctx", Input).value = "2048"
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, SettingsScreen)
        saved = tomllib.loads(file.read_text())
        assert (saved["models"]["dirs"], saved["load"]["ctx"]) == (["models", "~/m"], 2048)
        assert saved["model"] == {"models/a.gguf": {"ctx": 1024}}
        screen = await open_settings(pilot)
        screen.query_one("#settings-dirs", TextArea).text = f"{conf / 'models'}\n~/m\n{more}\n"  # new: absolute
        await pilot.press("ctrl+s")
        assert tomllib.loads(file.read_text())["models"]["dirs"] == ["models", "~/m", str(more)]
    assert load_config(file).model_dirs == [conf / "models", Path.home() / "m", more]
