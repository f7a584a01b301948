"""The model picker: the catalog's models with their fit markers, and the adapter and scale fields checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input, OptionList

from tests.checkpoints import tiny_random_checkpoint
from tests.ggufs import write_tiny_gguf
from tests.tui.app_helpers import run_async, until
from tuillm.core.models.catalog import discover
from tuillm.core.settings import Config
from tuillm.tui.screens.pick_model import ModelChoice, PickModelScreen, entry_prompt, parse_choice
from tuillm.tui.session import Session

GIB = 1 << 30


def test_an_entry_shows_its_name_size_and_fit(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / ("x" * 60 + ".gguf"))
    (entry,) = [e for e in discover([tmp_path], available=12 * GIB, offload=False).entries if e.source == "folder"]
    line = entry_prompt(entry)
    assert line.plain.startswith("x" * 39 + "…") and line.plain.endswith("  fits")
    assert any(span.style == "bold green" for span in line.spans)


def test_the_adapter_and_scale_are_checked(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "alpha.gguf")
    (entry,) = [e for e in discover([tmp_path], available=12 * GIB, offload=False).entries if e.source == "folder"]
    lora = tmp_path / "lora.gguf"
    lora.write_bytes(b"GGUF")  # whether it is an adapter the load says, as for `tuillm chat --lora`
    assert parse_choice(entry, "", "") == ModelChoice(model, "alpha", None, 1.0)
    assert parse_choice(entry, f" {lora} ", "0.5") == ModelChoice(model, "alpha", lora, 0.5)
    with pytest.raises(ValueError, match="nope.gguf: no such adapter file"):
        parse_choice(entry, str(tmp_path / "nope.gguf"), "")
    # A slip for "~/": no such user (Path.expanduser raised RuntimeError); a name too long (is_file raised OSError).
    with pytest.raises(ValueError, match="~no-such-user-tuillm/a.gguf: no such adapter file"):
        parse_choice(entry, "~no-such-user-tuillm/a.gguf", "")
    with pytest.raises(ValueError, match="file name too long"):
        parse_choice(entry, str(tmp_path / ("x" * 300)), "")
    with pytest.raises(ValueError, match="from -100 to 100"):
        parse_choice(entry, str(lora), "500")
    with pytest.raises(ValueError):
        parse_choice(entry, str(lora), "strong")


class PickerApp(App[None]):
    def __init__(self, session: Session, current: Path | None) -> None:
        super().__init__()
        self.session = session
        self.current = current
        self.picked: list[ModelChoice | None] = []

    def compose(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.push_screen(PickModelScreen(self.session, current=self.current), self.picked.append)


@run_async
async def test_the_picker_lists_the_catalog_and_starts_on_the_chat_model(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "alpha.gguf")
    beta = write_tiny_gguf(tmp_path / "beta.gguf")
    tiny_random_checkpoint("llama", tmp_path / "gamma-hf")  # listed in Models, but chat loads GGUF files only
    session = Session(Config(model_dirs=[tmp_path]), model_dirs=[tmp_path], available_ram=12 * GIB)
    app = PickerApp(session, current=beta)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: isinstance(screen, PickModelScreen) and bool(screen.entries), "the list")
        assert "gamma-hf" in [e.name for e in discover([tmp_path], available=12 * GIB).entries]  # the catalog has it
        options = screen.query_one(OptionList)
        lines = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert [line.split()[0] for line in lines] == ["demo", "alpha", "beta"]
        assert all(line.split()[-1] in ("fits", "tight", "too big") for line in lines)
        assert options.highlighted == 2  # the chat's model
        screen.query_one("#pick-model-scale", Input).value = "9999"
        await pilot.press("enter")
        assert app.picked == []  # a bad scale is said, the dialog stays
        screen.query_one("#pick-model-scale", Input).value = "0.5"
        options.focus()
        await pilot.press("up", "enter")
        await until(pilot, lambda: bool(app.picked), "the choice")
        assert app.picked == [ModelChoice(tmp_path / "alpha.gguf", "alpha", None, 0.5)]
