"""The Models pane against a hostile models folder: file names with escape sequences, newlines and markup are shown
as one plain line each, and the unreadable files are told of once, not at every refresh."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tests.tui.chat_helpers import record_notifications

HOSTILE_NAME = "tr\x1b[2Junc\x1b]0;pwned\x07\nnl[b]x.gguf"  # clears the screen, renames the terminal, splits


def _unreadable_notes(seen: list[str]) -> list[str]:
    return [text for text in seen if "could not be read" in text]


@run_async
async def test_unreadable_names_are_one_safe_line_each(tmp_path: Path) -> None:
    (tmp_path / HOSTILE_NAME).write_bytes(b"GGUF\x03\x00")  # truncated: listed under the table
    app = make_app([tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        text = str(app.query_one("#models-problems", Static).content)
        assert "\x1b" not in text and "\x07" not in text
        heading, *entries = text.split("\n")
        assert heading == "Could not read:"
        assert len(entries) == 1 and entries[0].startswith("tr") and "nl[b]x.gguf: " in entries[0]


@run_async
async def test_unreadable_files_are_told_once_not_at_each_refresh(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a model")
    app = make_app([tmp_path])
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        assert _unreadable_notes(seen) == ["Models: 1 model file could not be read (listed below the table)"]
        # A conversion refreshes the pane after each file it writes: the same broken file is not news.
        for _ in range(3):
            await pilot.press("ctrl+r")
            await wait_for_catalog(pilot)
        assert len(_unreadable_notes(seen)) == 1
        # A new unreadable file is.
        (tmp_path / "other.gguf").write_bytes(b"")
        await pilot.press("ctrl+r")
        await wait_for_catalog(pilot)
        assert _unreadable_notes(seen)[1:] == ["Models: 2 model files could not be read (listed below the table)"]
        assert "broken.gguf" in str(app.query_one("#models-problems", Static).content)
