from pathlib import Path

from textual.app import App, ComposeResult

from tests.tui.app_helpers import run_async, until
from tuillm.tui.widgets.path_input import PathInput, complete_path


class _OneField(App[None]):
    def compose(self) -> ComposeResult:
        yield PathInput()


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.gguf").write_bytes(b"x")
    (tmp_path / "models" / "notes.txt").write_text("x")
    (tmp_path / "data.jsonl").write_text("{}\n")
    (tmp_path / ".hidden").mkdir()
    return tmp_path


def test_completes_folders_with_a_slash_and_files_by_name(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert complete_path(f"{root}/mo") == f"{root}/models/"
    assert complete_path(f"{root}/models/") == f"{root}/models/a.gguf"
    assert complete_path(f"{root}/da") == f"{root}/data.jsonl"
    assert complete_path(f"{root}/zz") is None
    assert complete_path(f"{root}/nowhere/x") is None


def test_hidden_entries_only_when_asked_for(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert complete_path(f"{root}/") in (f"{root}/data.jsonl", f"{root}/models/")
    assert complete_path(f"{root}/.h") == f"{root}/.hidden/"


def test_accept_filters_files_not_folders(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    gguf_only = lambda p: p.suffix == ".gguf"  # noqa: E731
    assert complete_path(f"{root}/models/n", gguf_only) is None
    assert complete_path(f"{root}/models/", gguf_only) == f"{root}/models/a.gguf"
    assert complete_path(f"{root}/m", gguf_only) == f"{root}/models/"


def test_home_stays_as_typed(tmp_path: Path, monkeypatch) -> None:
    root = _tree(tmp_path)
    monkeypatch.setenv("HOME", str(root))
    assert complete_path("~/mo") == "~/models/"


@run_async
async def test_typing_then_right_takes_the_completion(tmp_path: Path) -> None:
    root = _tree(tmp_path)

    app = _OneField()
    async with app.run_test() as pilot:
        field = app.query_one(PathInput)
        field.focus()
        field.value = f"{root}/mo"
        field.cursor_position = len(field.value)
        await pilot.pause()
        await pilot.press("right")
        assert field.value == f"{root}/models/"
        await pilot.pause()
        await pilot.press("right")
        assert field.value == f"{root}/models/a.gguf"
        assert field.path == root / "models" / "a.gguf"
        field.value = "~/x"
        assert field.path == Path.home() / "x"


@run_async
async def test_a_name_with_escape_sequences_is_never_suggested(tmp_path: Path) -> None:
    """Shown as the dim completion, the name would play its sequences: retitle the terminal, colour the screen."""
    (tmp_path / "e\x1b]0;pwned\x07\x1b[31mX.jsonl").write_text("{}\n")
    (tmp_path / "even.jsonl").write_text("{}\n")

    app = _OneField()
    async with app.run_test() as pilot:
        field = app.query_one(PathInput)
        field.focus()
        await pilot.press(*f"{tmp_path}/e")
        await until(pilot, lambda: field._suggestion, "the completion")  # the suggester runs in a worker
        await pilot.press("right")  # takes the completion: the plain name, the other skipped
        assert field.value == f"{tmp_path}/even.jsonl"
        shown = "".join(strip.text for strip in field.render_lines(field.region.reset_offset))
        assert "\x1b" not in shown and "\x07" not in shown
