"""Long chats in the real app at 80x24 with a real SQLite store: only the bubbles near the view are mounted, and
scrolling, selecting and ``reveal`` still reach every message."""

from __future__ import annotations

import threading
from pathlib import Path

from textual.pilot import Pilot

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, send, wait_idle
from tests.tui.fake_backend import gated_backend
from tests.tui.widgets.long_chat import seed_long_chat
from tuillm.core.chat.store import ChatStore
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.tui.widgets.chat_bubble import MessageBubble, bubble_header
from tuillm.tui.widgets.chat_messages import ChatColumn, ChatView
from tuillm.tui.widgets.chat_view import MAX_MOUNTED, following_after


def numbers(view: ChatView) -> list[int]:
    """Which stored messages the mounted bubbles show (each starts with ``#i``)."""
    return [int(b.content.split()[0][1:]) for b in view.bubbles]


async def open_long_chat(pilot: Pilot, count: int) -> ChatView:
    view = pilot.app.query_one(ChatView)
    await until(pilot, lambda: len(view.messages) == count and bool(view.bubbles), "the long chat shown")
    await settled(pilot, view)
    return view


async def settled(pilot: Pilot, view: ChatView) -> None:
    await pilot.pause()
    await until(pilot, lambda: not view._growing, "the view done mounting")
    await pilot.pause()


def in_view(view: ChatView, bubble: MessageBubble) -> bool:
    return bubble.region.overlaps(view.region)  # region: on screen (empty when scrolled out)


@run_async
async def test_a_thousand_messages_open_at_the_end_with_few_bubbles_and_reveal_reaches_the_first(
        tmp_path: Path) -> None:
    with ChatStore() as store:
        chat_id = seed_long_chat(store, 1000)
        first = store.messages(chat_id)[0].id
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_long_chat(pilot, 1000)
        shown = numbers(view)
        assert len(shown) <= MAX_MOUNTED and shown == list(range(1000 - len(shown), 1000))
        assert view.scroll_y == view.max_scroll_y > 0 and in_view(view, view.bubbles[-1])

        # Scrolling up mounts the messages above, keeping what the user sees where it was.
        view.scroll_to(y=1, animate=False, immediate=True)
        top, start = view.bubbles[0], view.start
        offset = top.virtual_region.y - view.scroll_y
        await settled(pilot, view)
        assert view.start < start and top.virtual_region.y - view.scroll_y == offset
        assert numbers(view) == list(range(view.start, view.end)) and len(view.bubbles) <= MAX_MOUNTED

        column = app.query_one(ChatColumn)
        assert not await column.reveal(10**9)  # not in this chat
        assert await column.reveal(first)
        await settled(pilot, view)
        assert view.start == 0 and len(view.bubbles) <= MAX_MOUNTED and app.focused is view
        assert view.selected_bubble().content.startswith("#0 ") and in_view(view, view.selected_bubble())


WALKED = 70


@run_async
async def test_selection_and_scrolling_walk_every_message_and_reveal_jumps_to_one(tmp_path: Path) -> None:
    # 70 messages: walking up from the last mounts past MAX_MOUNTED (the far side is unmounted), and message 60 is
    # not mounted when the walk ends at the first (reveal re-windows the view).
    with ChatStore() as store:
        chat_id = seed_long_chat(store, WALKED)
        ids = [m.id for m in store.messages(chat_id)]
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_long_chat(pilot, WALKED)
        assert view.start > 0
        await pilot.press("shift+tab")  # from the prompt to the messages: the newest is selected
        assert app.focused is view and view.selected_bubble().content.startswith(f"#{WALKED - 1} ")
        await pilot.press(*["up"] * (WALKED - 1))
        await settled(pilot, view)
        first = view.selected_bubble()
        assert first.content.startswith("#0 ") and first.has_class("-selected") and in_view(view, first)
        assert len(view.bubbles) <= MAX_MOUNTED and sum(b.has_class("-selected") for b in view.bubbles) == 1
        await pilot.press("up", "down", "c")  # stays at the first, then the second, copied
        assert app.clipboard.startswith("#1 ")

        column = app.query_one(ChatColumn)
        app.query_one("#chat-prompt").focus()
        await pilot.pause()
        assert view.end <= 60
        assert await column.reveal(ids[60])  # from the prompt: the view takes the focus, the message selected
        await settled(pilot, view)
        bubble = view.selected_bubble()
        assert app.focused is view and bubble.message_id == ids[60] and bubble.has_class("-selected")
        assert in_view(view, bubble)
        await pilot.press("down")
        assert view.selected_bubble().message_id == ids[61]

        assert await column.reveal(ids[-1])
        await settled(pilot, view)
        assert view.end == WALKED and view.start > 0 and in_view(view, view.selected_bubble())
        for _ in range(100):  # bounded: a view that stops loading fails below instead of hanging
            if view.start == 0:
                break
            view.scroll_home(animate=False, immediate=True)
            await settled(pilot, view)
        view.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert numbers(view)[0] == 0 and in_view(view, view.bubbles[0]) and len(view.bubbles) <= MAX_MOUNTED


GatedBackend = gated_backend(12)


@run_async
async def test_a_reply_in_a_long_chat_streams_into_view_and_is_followed(tmp_path: Path) -> None:
    GatedBackend.gate = threading.Semaphore(0)
    with ChatStore() as store:
        seed_long_chat(store, 1000)
    app = chat_app(tmp_path, chat_backend=GatedBackend)
    async with app.run_test(size=SIZE) as pilot:
        view, pane = await open_long_chat(pilot, 1000), chat_pane(app)
        await app.query_one(ChatColumn).reveal(view.messages[3].id)  # far up: the end is not mounted
        await settled(pilot, view)
        assert view.end < 1000
        kept = view.bubbles[0]
        await send(pilot, "One more?")
        await until(pilot, lambda: pane.busy and view.end == 1002, "the reply streaming")
        GatedBackend.gate.release(6)
        await until(pilot, lambda: view.bubbles[-1].text_shown.count("Line") == 6, "six lines")
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y > 0 and in_view(view, view.bubbles[-1])
        assert kept not in view.bubbles and len(view.bubbles) <= MAX_MOUNTED  # the far window was let go
        # The user walks up past the window's top while the reply streams: its bubble stays, and keeps growing.
        view.focus()
        await pilot.press(*["up"] * 25)
        await settled(pilot, view)
        assert view.selected_bubble().message_id == view.messages[1001 - 25].id
        assert pane.stream.bubble is view.bubbles[-1] and view.end == 1002
        before = view.bubbles[:-1]
        GatedBackend.gate.release(6)
        await wait_idle(pilot)
        # The end of the turn updated the reply's bubble in place: nothing else was mounted again.
        assert view.bubbles[:-1] == before and view.bubbles[-1].complete
        assert view.bubbles[-1].content.count("Line") == 12 and in_view(view, view.selected_bubble())


def test_the_header_shows_where_a_message_stands_among_its_alternatives() -> None:
    assert bubble_header("assistant", True, None, alternatives=(2, 3)) == "Assistant ‹2/3›"
    assert bubble_header("user", True, None) == "You"
    head = bubble_header("assistant", True, {"generated_tokens": 5, "tokens_per_s": 9.0}, model="demo",
                         alternatives=(1, 2))
    assert head == "Assistant ‹1/2› · demo · 5 tokens, 9.0 tok/s"
    assert bubble_header("assistant", False, None, streaming=True, alternatives=(3, 3)) == "Assistant ‹3/3› …"
    message = StoredMessage(id=1, chat_id=1, role="assistant", content="hi", stats=None, complete=True,
                            created=0.0, alternatives=(2, 2))
    assert MessageBubble.of(message, streaming=False, label=str).alternatives == (2, 2)


@run_async
async def test_an_attached_file_is_drawn_as_one_line_and_kept_whole(tmp_path: Path) -> None:
    """A user message holding an attached file shows one line for it (a big highlighted block takes seconds to
    draw); the bubble keeps the message as stored, for copying and for the model."""
    from textual.app import App
    from textual.widgets import Markdown

    from tuillm.core.chat.attachments import read_attachment, with_attachments

    source = tmp_path / "big.py"
    source.write_text("".join(f"x{i} = {i}\n" for i in range(5000)))
    content = with_attachments("Review this", [read_attachment(source, name="big.py")])

    class One(App):
        def compose(self):
            yield MessageBubble("user", content, message_id=1)

    async with One().run_test(size=SIZE) as pilot:
        bubble = pilot.app.query_one(MessageBubble)
        shown = pilot.app.query_one(Markdown).source
        assert "📎 big.py · 5,000 lines" in shown and "x4999" not in shown
        assert bubble.content == content and "x4999 = 4999" in bubble.content


def test_the_follow_rule_shared_by_the_chat_and_ab_views() -> None:
    assert following_after(True, 10, 12, 20)  # down, short of the end: a scroll_end landing short, still following
    assert not following_after(True, 10, 8, 20)  # up: stopped
    assert not following_after(False, 8, 12, 20)  # down again, short of the end: still stopped
    assert following_after(False, 12, 19.2, 20)  # at the end (within a row): following again
    assert following_after(True, 20, 19.5, 20)  # a fraction up at the end (rounding) is still the end


@run_async
async def test_only_a_move_up_stops_following(tmp_path: Path) -> None:
    """scroll_end() lands on the end the layout knew; text that grew meanwhile leaves the offset short of the new
    end, and that must not read as the user having scrolled away (the reply's last lines went unseen)."""
    with ChatStore() as store:
        seed_long_chat(store, 40)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_long_chat(pilot, 40)
        end = view.max_scroll_y
        assert view.at_bottom and end > 10
        view.scroll_to(y=end - 5, animate=False, immediate=True)  # the user scrolls up a little
        assert not view.at_bottom
        view.scroll_to(y=end - 3, animate=False, immediate=True)  # and back down, not yet to the end
        assert not view.at_bottom
        view.scroll_to(y=end, animate=False, immediate=True)  # at the end again: following again
        assert view.at_bottom
        view.scroll_to(y=end - 8, animate=False, immediate=True)  # up again; then the user sends
        view.follow_from_now()  # following again (its scroll_end runs after the next refresh)
        view.scroll_to(y=end - 2, animate=False, immediate=True)  # a move down short of an end that grew
        assert view.at_bottom


@run_async
async def test_a_key_that_selects_up_is_not_undone_by_following(tmp_path: Path) -> None:
    """Content that grows asks the view to keep its end in view, after the next refresh. A key pressed in between
    (↑, busy machine) chose an older message: the view must show that message, not scroll back to the end."""
    with ChatStore() as store:
        seed_long_chat(store, 40)
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_long_chat(pilot, 40)
        view.focus()
        await settled(pilot, view)
        for _ in range(6):
            view.follow()  # content grew (as a window mounted or rebuilt asks, after the next refresh)
            await view.action_select(-1)
        view.follow()
        await settled(pilot, view)
        await pilot.pause()
        selected = view.selected_bubble()
        assert view.selected == 33 and selected is not None
        assert in_view(view, selected) and not view.at_bottom and view.scroll_y < view.max_scroll_y
