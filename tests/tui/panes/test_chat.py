"""The Chat pane with the demo model through real llama.cpp and a real SQLite file, driven with Pilot at 80x24."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from tests.core.gguf_copy import copy_gguf
from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SHORT, SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tuillm.core.chat.store import ChatStore
from tuillm.core.llama.options import Sampling
from tuillm.tui.panes.chat_stream import ReplyStream
from tuillm.tui.widgets.chat_messages import ChatView
from tuillm.tui.widgets.status_line import StatusLine


def bubbles(app) -> list:
    return app.query_one(ChatView).bubbles


def test_streamed_reply_is_saved_and_back_after_a_restart(tmp_path: Path, monkeypatch) -> None:
    # Spy on the pane's draws: what the reply's bubble showed after each one while the reply was streaming.
    shown: list[str] = []
    draw, add = ReplyStream.draw, ReplyStream.add

    async def recording_draw(stream: ReplyStream) -> None:
        await draw(stream)
        if stream.bubble is not None:
            shown.append(stream.bubble.text_shown)

    def paced_add(stream: ReplyStream, token) -> None:
        # At least 1 s of streaming, several draw intervals: a fast machine decoded the 48 tokens before the reply's
        # bubble was mounted, and the whole reply was drawn in one step.
        time.sleep(0.025)
        add(stream, token)

    monkeypatch.setattr(ReplyStream, "draw", recording_draw)
    monkeypatch.setattr(ReplyStream, "add", paced_add)
    asyncio.run(_streamed_reply_and_restart(tmp_path, shown))


async def _streamed_reply_and_restart(tmp_path: Path, shown: list[str]) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        assert app.current_pane_id() == "chat" and app.focused is app.query_one("#chat-prompt")
        assert "demo (loads with the next message)" in str(app.query_one("#chat-header").content)
        assert not pane.engine.loaded  # nothing loaded at start: the app opens light
        pane.draft_sampling = replace(SHORT, max_tokens=48)
        await send(pilot, "Hello! Who are you?")
        await wait_idle(pilot)
        # The text was drawn in several steps while it streamed, each a prefix of the next.
        steps = [text for text in shown if text.strip()]
        assert len(steps) >= 2, shown
        assert all(later.startswith(earlier) for earlier, later in zip(steps, steps[1:], strict=False))
        user, reply = bubbles(app)
        assert (user.role, user.content) == ("user", "Hello! Who are you?")
        assert reply.role == "assistant" and reply.content.strip() and reply.complete
        assert reply.content.startswith(steps[-1]) and reply.markdown.source == reply.content
        assert pane.last_stats["generated_tokens"] > 0
        status = app.query_one(StatusLine).model_name
        assert status.startswith("demo · ctx ") and f"/{512} · " in status and status.endswith("tok/s")
        assert str(app.query_one("#chat-list").get_option_at_index(0).prompt) == "Hello! Who are you?"
        saved = reply.content

    # A new app on the same database: the chat and its messages are there, the last chat opened.
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: len(bubbles(app)) == 2, "the stored chat shown")
        assert chat_pane(app).chat_id is not None
        assert [(b.role, b.content) for b in bubbles(app)] == [("user", "Hello! Who are you?"),
                                                                ("assistant", saved)]
        assert "Hello! Who are you? · demo" in str(app.query_one("#chat-header").content)


@run_async
async def test_escape_stops_the_reply_mid_stream(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = Sampling(temperature=0.8, max_tokens=400, seed=5)
        await send(pilot, "Write a very long story about a lighthouse keeper.")
        await until(pilot, lambda: pane.busy and bubbles(app)[-1].text_shown.strip() != "",
                         "the first streamed words")
        await pilot.press("escape")
        await wait_idle(pilot)
        stats = pane.last_stats
        assert stats["finish_reason"] == "cancelled" and 0 < stats["generated_tokens"] < 400
        reply = bubbles(app)[-1]
        assert not reply.complete and reply.content.strip()
        assert "stopped" in str(reply.query_one(".bubble-role").content)
        (message,) = [m for m in pane.store.messages(pane.chat_id) if m.role == "assistant"]
        assert message.content == reply.content and not message.complete


@run_async
async def test_regenerate_and_edit_the_last_message(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = SHORT
        await send(pilot, "Name a colour.")
        await wait_idle(pilot)
        first = [m.id for m in pane.store.messages(pane.chat_id)]
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        again = pane.store.messages(pane.chat_id)
        assert [m.role for m in again] == ["user", "assistant"]
        assert again[0].id == first[0] and again[1].id != first[1]  # a new reply replaced the old one
        assert [b.message_id for b in bubbles(app)] == [m.id for m in again]

        await pilot.press("ctrl+g")
        prompt = app.query_one("#chat-prompt")
        assert prompt.text == "Name a colour." and pane.editing
        prompt.text = "Name a fruit."
        await pilot.press("enter")
        await wait_idle(pilot)
        edited = pane.store.messages(pane.chat_id)
        assert [(m.role, m.content) for m in edited][0] == ("user", "Name a fruit.")
        assert len(edited) == 2 and edited[1].content.strip() and not pane.editing
        assert [b.content for b in bubbles(app)] == [m.content for m in edited]


@run_async
async def test_overflow_is_trimmed_with_a_notice(tmp_path: Path) -> None:
    long = " ".join(f"Fact {i}: the lighthouse has {i} windows facing the sea." for i in range(12))
    with ChatStore() as store:
        chat = store.create_chat("Long chat", params=SHORT.to_json())
        for turn in range(4):
            store.add_message(chat.id, "user", f"Question {turn}. {long}")
            store.add_message(chat.id, "assistant", f"Answer {turn}. {long}")
    app = chat_app(tmp_path, ctx=384)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: len(bubbles(app)) == 8, "the stored chat shown")
        assert pane.chat_id == chat.id
        notes = record_notifications(app)
        await send(pilot, "And now?")
        await wait_idle(pilot)
        assert any("context full" in text for text in notes), notes
        assert pane.last_stats["generated_tokens"] > 0 and pane.last_stats["prompt_tokens"] < 384
        assert len(pane.store.messages(chat.id)) == 10  # trimming leaves the stored chat whole


@run_async
async def test_hostile_template_is_refused_and_the_app_stays_up(tmp_path: Path, demo_gguf: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = copy_gguf(demo_gguf, tmp_path / "hostile.gguf", {
        "tokenizer.chat_template": f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"})
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        notes = record_notifications(app)
        pane.use_model(hostile)
        await wait_idle(pilot)
        assert pane.engine.loaded and app.query_one(StatusLine).model_name == "hostile.gguf · ctx 0/512"
        pane.draft_sampling = SHORT
        await send(pilot, "hi")
        await wait_idle(pilot)
        assert any(text.startswith("Reply failed") and "sandbox" in text for text in notes), notes
        assert not marker.exists() and app.is_running
        # No empty reply was kept; the message stays, and a good model answers it.
        assert [m.role for m in pane.store.messages(pane.chat_id)] == ["user"]
        assert [b.role for b in bubbles(app)] == ["user"]


@run_async
async def test_sending_scrolls_to_the_bottom(tmp_path: Path) -> None:
    """After scrolling up, a sent message and its reply are shown: sending always goes to the bottom (following
    the streamed text only while the user stays there: tests/tui/panes/test_chat_ui.py)."""
    with ChatStore() as store:
        chat = store.create_chat("Scroll", params=replace(SHORT, max_tokens=16).to_json())
        for turn in range(4):  # a few short turns: taller than the view, a short prompt to evaluate
            store.add_message(chat.id, "user", f"Question {turn}")
            store.add_message(chat.id, "assistant", "\n\n".join(f"Line {i}." for i in range(5)))
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        view = app.query_one(ChatView)
        await until(pilot, lambda: len(bubbles(app)) == 8, "the stored chat shown")
        await pilot.pause()
        assert view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y  # opened at the newest message
        view.scroll_home(animate=False)
        await pilot.pause()
        await send(pilot, "One more?")
        await wait_idle(pilot)
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y and bubbles(app)[-1].content.strip()
        assert [b.content for b in bubbles(app)[-2:-1]] == ["One more?"]
