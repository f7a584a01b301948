"""Start-up composes only the pane it shows: the first frame does not wait for the Models, Convert and Train panes
(the Train pane alone has about a hundred widgets); they are mounted after it, one a frame, or at once when the
user goes to one first. What the first frame holds is checked here; its time is the bench's (tests/bench/startup.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import TabbedContent, TabPane

from tests.tui.app_helpers import make_app, panes_ready, run_async
from tuillm.tui.app import PANES

SIZE = (80, 24)


def mounted_panes(app) -> list[str]:
    return [spec.id for spec in PANES if app.screen_stack[0].query(f"#pane-{spec.id}")]


@run_async
async def test_the_first_frame_composes_only_the_chat_pane(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    at_first_frame: list[tuple[list[str], int]] = []
    mount_next = app._mount_next_pane

    def spy() -> None:  # the app calls it after each repaint from the first on: what that frame was drawn from
        if not at_first_frame:
            at_first_frame.append((mounted_panes(app), len(list(app.screen_stack[0].walk_children()))))
        mount_next()

    app._mount_next_pane = spy  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):  # nothing else touches a pane till the first frame is out (bounded: never hang)
            if at_first_frame:
                break
            await pilot.pause()
        await panes_ready(pilot)
        widgets = len(list(app.screen_stack[0].walk_children()))
        assert mounted_panes(app) == ["chat", "models", "convert", "train"]
    (panes, first_widgets), = at_first_frame
    assert panes == ["chat"]
    assert first_widgets * 2 < widgets, (first_widgets, widgets)  # the other panes are most of the widgets


@run_async
async def test_all_panes_follow_in_tab_order_with_their_ids(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await panes_ready(pilot)
        tabs = app.query_one(TabbedContent)
        assert [pane.id for pane in tabs.query(TabPane)] == [spec.id for spec in PANES]
        for spec in PANES:  # each pane once, inside its own tab
            (pane,) = app.query(f"#pane-{spec.id}")
            assert isinstance(pane, spec.load()) and pane.parent is tabs.get_pane(spec.id)
        assert app.current_pane_id() == "chat" and app.focused is app.query_one("#chat-prompt")


@run_async
async def test_a_pane_key_pressed_during_start_up_shows_the_pane(tmp_path: Path) -> None:
    """F5 at once (Train, the last to be mounted): the pane is mounted then and takes the focus."""
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        assert app.current_pane_id() == "train"
        assert app.focused is not None and app.query_one("#pane-train") in app.focused.ancestors_with_self
        await panes_ready(pilot)
        assert len(app.query("#pane-train")) == 1  # the mount that was due later did not add a second one


@run_async
async def test_the_palette_lists_the_commands_of_panes_not_mounted_yet(tmp_path: Path) -> None:
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Train: start" in titles and "Convert: start" in titles and "Refresh models" in titles
        await panes_ready(pilot)
        assert mounted_panes(app) == [spec.id for spec in PANES]


@run_async
async def test_a_quit_while_a_pane_mounts_lets_it_finish_and_starts_no_other(tmp_path: Path, monkeypatch) -> None:
    """A quit as soon as the Models pane begins to mount (slowly here): the quit waits for it, and the frames drawn
    meanwhile start no other pane's mount. They did: the Convert pane, torn down mid-mount, ran its Mount handler
    without its children, and NoMatches for its bar ended the app with a traceback (CI, once)."""
    from tuillm.tui.panes.models import ModelsPane

    mount = ModelsPane.on_mount

    async def slow_mount(pane: ModelsPane) -> None:
        await asyncio.sleep(0.5)  # frames are drawn meanwhile
        mount(pane)

    monkeypatch.setattr(ModelsPane, "on_mount", slow_mount)
    app = make_app([tmp_path])
    async with app.run_test(size=SIZE):
        for _ in range(5000):  # bounded: never hang
            if app._pane_mounts:
                break
            await asyncio.sleep(0.001)
        begun = list(app._pane_mounts)  # Models, and the next pane where a frame came between (one a frame)
        assert begun[0] == "models" and len(begun) < len(PANES) - 1
    assert list(app._pane_mounts) == begun  # none begun after the quit
    assert app._exception is None and not app.unexpected_errors
