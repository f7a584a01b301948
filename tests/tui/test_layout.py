"""The layout at 60–120 columns: the chat list hides itself below 90 columns and Ctrl+L shows or hides it; the chat
header always names the model; the status line keeps model, context and speed at 80 columns; notifications never
cover the prompt; the tabs name their F-keys. On the fake chat backend, with fixed machine figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Label, TextArea
from textual.widgets._toast import Toast

from tests.tui.app_helpers import make_app, run_async
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.app import TuillmApp
from tuillm.tui.panes.chat_layout import LIST_MIN_WIDTH, fit_header
from tuillm.tui.widgets.status_line import MemorySample, StatusLine, model_text

LONG_MODEL = "SmolLM2-135M-Instruct-Q4_1"
STATUS = f"{LONG_MODEL} · ctx 1234/8192 · 48.3 tok/s"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TuillmApp:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    return make_app([Path("models")], chat_backend=FakeBackend)


def sidebar_shown(app: TuillmApp) -> bool:
    return bool(app.query_one("#pane-chat").sidebar.display)


async def settle(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.pause()  # the header is fitted after the layout that follows a resize


def test_fit_header_shortens_the_title_never_the_model() -> None:
    assert fit_header("Python one-liner", "demo", 80) == "Python one-liner · demo"
    assert fit_header("A very long title about lighthouses and the sea", LONG_MODEL, 40) == (
        f"A very lon… · {LONG_MODEL}")
    assert len(fit_header("A very long title about lighthouses", LONG_MODEL, 40)) == 40
    assert fit_header("Title", LONG_MODEL, 20) == f"{LONG_MODEL[:19]}…"  # not even the model fits: its start
    assert fit_header("Title", "demo", 0) == "Title · demo"  # before the first layout: as is


def test_model_text_keeps_context_and_speed() -> None:
    assert model_text(STATUS, 100) == f"model: {STATUS}"
    for width in (55, 45, 35):
        text = model_text(STATUS, width)
        assert "ctx 1234/8192" in text and "48.3 t/s" in text and text.startswith("Smol") and len(text) <= width
    assert model_text(None, 80) == "no model loaded"


@run_async
async def test_the_list_hides_below_90_columns_and_comes_back(app: TuillmApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert sidebar_shown(app)
        await pilot.resize_terminal(LIST_MIN_WIDTH - 1, 24)
        await settle(pilot)
        assert not sidebar_shown(app)
        chat_main = app.query_one("#chat-main")
        assert chat_main.region.x == 0 and chat_main.region.width == LIST_MIN_WIDTH - 1  # the chat has the width
        await pilot.resize_terminal(LIST_MIN_WIDTH, 24)
        await settle(pilot)
        assert sidebar_shown(app)


@run_async
async def test_ctrl_l_shows_and_hides_the_list_and_the_choice_sticks(app: TuillmApp) -> None:
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        assert not sidebar_shown(app)
        await pilot.press("ctrl+l")  # shown, and the focus is in it
        assert sidebar_shown(app) and app.focused is not None and app.focused.id == "chat-list"
        await settle(pilot)
        header = app.query_one("#chat-header", Label)
        # Fitted to the narrower column: the model's state in fewer words, so the title stays.
        assert str(header.content) == "New chat · demo (not loaded)"
        assert len(str(header.content)) <= header.content_region.width
        await pilot.resize_terminal(70, 20)  # the user's choice, not the width, decides now
        await settle(pilot)
        assert sidebar_shown(app)
        await pilot.press("ctrl+l")  # from the list: hidden, and the prompt has the focus
        assert not sidebar_shown(app) and isinstance(app.focused, TextArea) and app.focused.id == "chat-prompt"
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert not sidebar_shown(app)  # hidden by the user: it stays hidden when the terminal grows


@run_async
async def test_ctrl_l_on_a_shown_list_only_goes_to_it(app: TuillmApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+l")
        assert sidebar_shown(app) and app.focused is not None and app.focused.id == "chat-list"
        await pilot.resize_terminal(80, 24)  # not a choice to keep it: the width still decides
        await settle(pilot)
        assert not sidebar_shown(app)
        assert isinstance(app.focused, TextArea)  # the focus left the hidden list


@run_async
async def test_the_header_keeps_the_model_at_60_columns(app: TuillmApp) -> None:
    with ChatStore() as store:
        chat = store.create_chat("A very long title about a lighthouse keeper and the storm of the century")
        store.add_message(chat.id, "user", "Tell me a story.")
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        header = str(app.query_one("#chat-header", Label).content)
        assert header.startswith("A very long") and "…" in header
        assert header.endswith("· demo (loads with the next message)")
        assert len(header) <= app.query_one("#chat-header").content_region.width


@pytest.mark.parametrize("width", [60, 80])
@run_async
async def test_the_status_line_keeps_model_context_and_speed(app: TuillmApp, width: int) -> None:
    async with app.run_test(size=(width, 24)) as pilot:
        status = app.query_one(StatusLine)
        status.set_model(STATUS)
        await settle(pilot)
        ram = str(status.query_one("#status-ram", Label).content)
        model = str(status.query_one("#status-model", Label).content)
        assert ram.startswith("RAM 3.0/16.0 GiB")
        assert "ctx 1234/8192" in model and "48.3 t" in model and model.startswith("Smol")
        assert len(ram) + 1 + len(model) <= status.content_region.width
        if width == 80:
            assert LONG_MODEL in model  # at 80 columns the name is whole too


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (120, 40)])
@run_async
async def test_notifications_never_cover_the_prompt(app: TuillmApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size, notifications=True) as pilot:
        for n in range(6):  # more than fit: the rack scrolls instead of growing over the prompt
            app.notify(f"Notification {n}: a message long enough to wrap over a couple of lines here",
                       title="Test", timeout=30)
        await settle(pilot)
        # What is drawn on each cell of the prompt and of the chat header is theirs, not a notification's.
        prompt = app.query_one("#chat-prompt")
        header = app.query_one("#chat-header")
        assert list(app.screen.query(Toast))
        for region, owner in ((prompt.region, prompt), (header.region, header)):
            for y in range(region.y, region.bottom):
                for x in range(region.x, region.right):
                    widget, _ = app.screen.get_widget_at(x, y)
                    assert widget is owner or owner in widget.ancestors, (x, y, widget)
        # And they are on screen: the first toast at the top right, under the tab bar and the header.
        first = app.screen.query(Toast).first()
        assert first.region.y == 4 and first.region.right >= size[0] - 2  # (the rack's scrollbar gutter)


@run_async
async def test_the_tabs_name_their_keys(app: TuillmApp) -> None:
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        tabs = app.query_one("#panes")
        labels = [str(tabs.get_tab(pane).label) for pane in ("chat", "models", "convert", "train")]
        assert labels == ["Chat F2", "Models F3", "Convert F4", "Train F5"]
        for pane in ("models", "convert", "train"):  # every tab is on screen at 60 columns
            assert tabs.get_tab(pane).region.right <= 60


@run_async
async def test_the_status_line_makes_room_for_the_server_address(app: TuillmApp) -> None:
    async with app.run_test(size=(100, 24)) as pilot:
        status = app.query_one(StatusLine)
        status.set_model(STATUS)
        status.set_server("http://127.0.0.1:8080")
        await settle(pilot)
        parts = [str(label.content) for label in status.query(Label)]
        assert parts[-1] == "serving http://127.0.0.1:8080"
        assert "ctx 1234/8192" in parts[1] and "48.3 t" in parts[1] and parts[1].startswith("Smol")
        assert sum(len(part) + 1 for part in parts) - 1 <= status.content_region.width


@run_async
async def test_the_end_of_the_chat_stays_in_view_when_the_list_comes_and_goes(app: TuillmApp) -> None:
    with ChatStore() as store:
        chat = store.create_chat("Long")
        for n in range(6):
            store.add_message(chat.id, "user", f"Question {n}: " + "words " * 30)
            store.add_message(chat.id, "assistant", f"Answer {n}: " + "more words " * 30)
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one("#chat-view")
        for _ in range(200):  # bounded: the view mounts its messages and scrolls to the end
            await pilot.pause(0.01)
            if view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y:
                break
        for _ in range(2):  # shown (the text rewraps to more lines), then hidden (to fewer)
            await pilot.press("ctrl+l")
            await settle(pilot)
            assert view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y


class _Bare(App[None]):
    pass


@run_async
async def test_the_status_line_takes_a_model_before_it_has_composed() -> None:
    # The Chat pane can report its model before the status line has composed its labels (a race seen in CI).
    async with _Bare().run_test(size=(80, 3)) as pilot:
        status = StatusLine(lambda: MemorySample(used=3 * 2**30, total=16 * 2**30, rss=2**27), interval=0)
        status.set_model(STATUS)
        await pilot.app.mount(status)
        await settle(pilot)
        assert str(status.query_one("#status-model", Label).content).startswith(f"model: {LONG_MODEL}")
        assert str(status.query_one("#status-ram", Label).content).startswith("RAM 3.0/16.0 GiB")
