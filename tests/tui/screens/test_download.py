"""The Download dialog of the Models pane against the local Hub: search, quants with fit, download, stop, resume."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable, Label

from tests.hub_server import DEMO_REPO, FakeHub
from tests.tui.app_helpers import make_app, run_async, wait_for_catalog
from tuillm.core.models.catalog import hf_cache_dir
from tuillm.core.models.hub import download
from tuillm.tui.screens.download import DownloadScreen

Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


async def until(pilot: Pilot, check, what: str) -> None:  # noqa: ANN001 - a predicate
    for _ in range(3000):  # bounded: a broken dialog fails instead of hanging
        if check():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never: {what}")


def status(app) -> str:  # noqa: ANN001
    return str(app.screen.query_one("#download-status", Label).render())


async def open_demo_repo(pilot: Pilot) -> DownloadScreen:
    await pilot.press("f3")
    await wait_for_catalog(pilot)
    await pilot.press("p")
    screen = pilot.app.screen
    assert isinstance(screen, DownloadScreen)
    await pilot.press(*"smollm2", "enter")
    repos = screen.query_one("#download-repos", DataTable)
    await until(pilot, lambda: repos.row_count == 1 and repos.has_focus, "the search results")
    await pilot.press("enter")
    files = screen.query_one("#download-files", DataTable)
    await until(pilot, lambda: files.row_count == 3 and files.has_focus, "the quants")
    return screen


@run_async
async def test_search_pick_and_download_with_the_keyboard(hub: FakeHub) -> None:
    app = make_app([])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_demo_repo(pilot)
        files = screen.query_one("#download-files", DataTable)
        rows = [[str(c) for c in files.get_row_at(i)] for i in range(3)]
        assert [r[1] for r in rows] == ["Q2_K", "Q4_K_M", "Q8_0"] and all(r[4] == "✓ fits" for r in rows)
        assert files.cursor_row == 1 and rows[1][0] == "*"  # the cursor on what `tuillm pull` would choose
        assert "Q4_K_M, the usual pick" in status(app) and "1 mmproj file(s) not used" in status(app)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, DownloadScreen), "the download to finish")
        await wait_for_catalog(pilot)
        pane = app.query_one("#pane-models")
        entry = pane.selected_entry()
        assert entry is not None and entry.name == f"{DEMO_REPO}/{Q4}" and entry.source == "hf-cache"
        await pilot.press("p", *"smollm2", "enter")  # opened again: the quant is marked as downloaded
        screen = app.screen
        repos = screen.query_one("#download-repos", DataTable)
        await until(pilot, lambda: repos.row_count == 1 and repos.has_focus, "the search results")
        await pilot.press("enter")
        files = screen.query_one("#download-files", DataTable)
        await until(pilot, lambda: files.row_count == 3, "the quants")
        assert [str(files.get_row_at(i)[5]) for i in range(3)] == ["", "✓", ""]


@run_async
async def test_escape_stops_and_enter_resumes(hub: FakeHub) -> None:
    hub.slow[Q4] = 0.002
    part = download.partial_path(hf_cache_dir(), DEMO_REPO, hub.repos[DEMO_REPO].files[Q4].sha256())
    app = make_app([])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_demo_repo(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: part.exists() and part.stat().st_size > 2 << 20, "a partial download")
        await pilot.press("escape")
        await until(pilot, lambda: screen.cancel is None, "the download to stop")
        assert "stopped; the part downloaded is kept" in status(app) and isinstance(app.screen, DownloadScreen)
        kept = part.stat().st_size
        files = screen.query_one("#download-files", DataTable)
        size = hub.repos[DEMO_REPO].files[Q4].size
        assert str(files.get_row_at(1)[5]) == f"{100 * kept // size}%"  # the kept part, shown on its row
        assert not (download.snapshot_dir(hf_cache_dir(), DEMO_REPO, hub.repos[DEMO_REPO].sha) / Q4).exists()
        hub.slow.clear()
        hub.requests.clear()
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, DownloadScreen), "the resumed download")
        ranges = [h.get("range") for h in hub.served("GET", "/cdn/")]
        assert ranges == [f"bytes={kept}-"] and not part.exists()


@run_async
async def test_failures_are_shown_in_the_dialog(hub: FakeHub, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(download, "free_bytes", lambda _path: 1 << 20)
    app = make_app([])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_demo_repo(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: "not enough disk space" in status(app), "the refusal")
        assert screen.cancel is None and not list(Path(hf_cache_dir()).rglob("*.gguf*"))
        await pilot.press("escape")
        assert not isinstance(app.screen, DownloadScreen)


@run_async
async def test_a_quant_that_does_not_fit_asks_first(hub: FakeHub) -> None:
    from tuillm.tui.screens.confirm import ConfirmScreen

    app = make_app([], available_ram=200 << 20)  # less than any quant needs
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_demo_repo(pilot)
        files = screen.query_one("#download-files", DataTable)
        assert all(str(files.get_row_at(i)[4]) == "✗ too big" for i in range(3))
        assert "no quant fits here" in status(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, "back to the dialog")
        assert screen.cancel is None  # nothing started
        assert all(h["range"] == "bytes=0-2097151" for h in hub.served("GET", "/cdn/"))  # the header probe only


@run_async
async def test_quitting_during_a_download_stops_it_and_keeps_the_part(hub: FakeHub) -> None:
    hub.slow[Q4] = 0.002
    part = download.partial_path(hf_cache_dir(), DEMO_REPO, hub.repos[DEMO_REPO].files[Q4].sha256())
    app = make_app([])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_demo_repo(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: part.exists() and part.stat().st_size > 1 << 20, "a partial download")
        cancel = screen.cancel
        app.exit()
    assert cancel is not None and cancel.is_set()  # the app left: the worker was told to stop
    await app.workers.wait_for_complete()
    assert part.exists()
    assert not (download.snapshot_dir(hf_cache_dir(), DEMO_REPO, hub.repos[DEMO_REPO].sha) / Q4).exists()


@run_async
async def test_file_names_like_markup_are_shown_as_written(hub: FakeHub, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    from rich.text import Text
    from textual.widgets._data_table import default_cell_formatter

    from tests.ggufs import write_tiny_gguf
    from tests.hub_server import FakeRepo

    # Read as markup, a label (a file's stem, when it names no quant) ran a click action and hid its name, and a
    # closing tag in the status line ("downloading sub/[/b]-Q4_K_M.gguf…") raised MarkupError.
    repo = FakeRepo("tuillm-test/Bracket-GGUF")
    repo.add("[@click=app.quit]tiny[b].gguf", write_tiny_gguf(tmp_path / "tiny.gguf"))
    repo.add("sub/[/b]-Q4_K_M.gguf", write_tiny_gguf(tmp_path / "q4.gguf", n_layers=3))
    monkeypatch.setitem(hub.repos, repo.repo, repo)
    app = make_app([])
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("f3")
        await wait_for_catalog(pilot)
        await pilot.press("p", *"bracket", "enter")
        screen = app.screen
        repos = screen.query_one("#download-repos", DataTable)
        await until(pilot, lambda: repos.row_count == 1 and repos.has_focus, "the search results")
        await pilot.press("enter")
        files = screen.query_one("#download-files", DataTable)
        await until(pilot, lambda: files.row_count == 2 and files.has_focus, "the quants")
        shown = [default_cell_formatter(files.get_row_at(i)[1]) for i in range(2)]  # as the table draws them
        assert all(isinstance(t, Text) and not t.spans for t in shown)
        assert sorted(t.plain for t in shown) == ["Q4_K_M", "[@click=app.quit]tiny[b]"]
        assert files.cursor_row == [t.plain for t in shown].index("Q4_K_M")  # the pick: its name is in the status
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, DownloadScreen), "the download to finish")
        await wait_for_catalog(pilot)
        entry = app.query_one("#pane-models").selected_entry()
        assert entry is not None and entry.name == f"{repo.repo}/sub/[/b]-Q4_K_M.gguf"
