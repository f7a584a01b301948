"""The Settings screen (F9) under pasted garbage: each bad field is refused by name and nothing is saved; what is
saved is TOML a strict reader takes and reads back the same after a restart; the fields read at 60 columns."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from tests.tui.app_helpers import make_app, run_async
from tests.tui.chat_helpers import record_notifications
from tuillm.core.settings import load_config
from tuillm.tui.screens.settings import SettingsScreen


async def _save(pilot, **fields: str) -> None:
    screen = pilot.app.screen
    for field_id, text in fields.items():
        widget = screen.query_one(f"#{field_id}")
        if isinstance(widget, TextArea):
            widget.text = text
        else:
            widget.value = text
    await pilot.press("ctrl+s")


@run_async
async def test_pasted_garbage_is_refused_and_what_is_saved_reads_back_the_same(tmp_path: Path) -> None:
    file = tmp_path / "tuillm.toml"
    file.write_text(f'[models]\ndirs = ["{tmp_path}"]\n')
    app = make_app([tmp_path], config=load_config(file))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        seen = record_notifications(app)
        await pilot.press("f9")
        # A context past 64 bits was saved: a file strict TOML readers refuse.
        await _save(pilot, **{"settings-load-ctx": "9" * 30})
        assert isinstance(app.screen, SettingsScreen)
        assert seen[-1] == ("Settings: Context (tokens): must be a whole number at least 16 that fits in 64 bits, "
                            f"not '{'9' * 30}'")
        for keys, why in (("chat.new = tab", "Tab is kept: it moves the focus; using Ctrl+N"),
                          ("app.help = ctrl+r", "Ctrl+R is chat.regenerate's key already (Chat pane); using F1"),
                          ("app.help = \u00a0f1\u00a0+", "'f1\\xa0+' is not a key (write them as in ctrl+r,f6)")):
            await _save(pilot, **{"settings-load-ctx": "8192", "settings-keys": keys})
            assert isinstance(app.screen, SettingsScreen) and seen[-1].startswith("Settings: Key overrides: keys.")
            assert why.split(";")[0] in seen[-1]
        assert file.read_text() == f'[models]\ndirs = ["{tmp_path}"]\n'  # nothing saved
        await _save(pilot, **{"settings-keys": 'models.refresh = "Ctrl+R, F6"\napp.show_chat = F2,Alt+C'})
        assert not isinstance(app.screen, SettingsScreen), seen[-1]
        config = app.session.config
        assert config.keys == {"models.refresh": "ctrl+r,f6", "app.show_chat": "f2,alt+c"}
        assert config.default_ctx == 8192
    data = tomllib.loads(file.read_text(encoding="utf-8"))
    assert data["keys"] == config.keys and data["load"]["ctx"] == 8192
    again = load_config(file)
    assert again.problem is None
    assert (again.keys, again.default_ctx, again.model_dirs, again.sampling, again.theme) == (
        config.keys, config.default_ctx, config.model_dirs, config.sampling, config.theme)


@run_async
async def test_the_fields_read_at_60_columns(tmp_path: Path) -> None:
    # Two fields a row left 60 columns' fields 2 characters wide: the context read "40".
    app = make_app([tmp_path], config=load_config(tmp_path / "tuillm.toml"))
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("f9")
        await pilot.pause()
        for field_id in ("settings-load-ctx", "settings-load-n_gpu_layers", "settings-sampling-temperature",
                         "settings-sampling-repeat_penalty"):
            field = app.screen.query_one(f"#{field_id}", Input)
            assert field.size.width >= 12 and field.region.right <= 60, (field_id, field.size)


def test_the_model_settings_dialog_refuses_a_context_past_64_bits_as_the_file_does() -> None:
    # Its fields are the settings' declarations too: a model's own ctx of 2**70 went into [model."..."].
    from tuillm.core.options import OptionError
    from tuillm.tui.screens.model_settings import parse_model_defaults

    with pytest.raises(OptionError) as err:
        parse_model_defaults({"ctx": str(2 ** 70)})
    assert str(err.value) == ("Context (tokens): must be a whole number at least 16 that fits in 64 bits, "
                              f"not '{2 ** 70}'")
    assert parse_model_defaults({"ctx": str(10 ** 12)}).ctx == 10 ** 12  # the memory estimate refuses that one
