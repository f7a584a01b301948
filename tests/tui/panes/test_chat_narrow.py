"""The Chat pane's status line and texts as a tester saw them: each chat shows its own context use, and at 60x20
with the chat list shown the header keeps its title and the prompt's placeholder and title fit."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, chat_pane, send, wait_idle
from tests.tui.fake_backend import FakeBackend
from tuillm.core.chat.store import ChatStore
from tuillm.tui.panes.chat_layout import fit_header
from tuillm.tui.panes.chat_model import context_used
from tuillm.tui.widgets.chat_list import ChatList
from tuillm.tui.widgets.chat_messages import ChatView
from tuillm.tui.widgets.chat_prompt import EDITING_TITLES, PLACEHOLDERS, fitting

LONG_TITLE = "Reversing lists and tuples in Python, with examples and timings"


async def settled(pilot: Pilot) -> None:
    """Until the messages posted meanwhile (the pane's status to the app) have been handled."""
    for _ in range(3):
        await pilot.pause()


def stored_chat(title: str, used: int | None = None, model: str = "") -> int:
    with ChatStore() as store:
        chat = store.create_chat(title, model=model)
        store.add_message(chat.id, "user", "How do I reverse a list?")
        stats = {"generated_tokens": 9, "tokens_per_s": 30.0, "finish_reason": "stop"}
        store.add_message(chat.id, "assistant", "Use `items[::-1]`.",
                          stats=stats if used is None else {**stats, "context_used": used})
        return chat.id


@run_async
async def test_a_new_chat_and_each_chat_opened_show_their_own_context_use(tmp_path: Path) -> None:
    other_model = tmp_path / "other.gguf"
    other_model.write_bytes(b"")  # there (not missing), never loaded: a chat of another model
    other = stored_chat("Another model's chat", used=40, model=str(other_model))
    older = stored_chat("Older chat", used=7)
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=SIZE) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the older chat shown")
        assert app.status_line.model_name is None  # nothing loaded: nothing to say about a context

        await pilot.press("ctrl+n")
        await send(pilot, "Hello there")
        await wait_idle(pilot)
        assert pane.last_stats is not None
        used = pane.last_stats["context_used"]
        assert used > 0 and app.status_line.model_name.startswith(f"demo · ctx {used}/512 ")
        replied = pane.chat_id

        await pilot.press("ctrl+n")  # a new chat holds nothing yet
        await settled(pilot)
        assert pane.chat_id is None and app.status_line.model_name == "demo · ctx 0/512"

        # Opened from the list (as its Enter does): the figure of each chat's last reply; a chat of another model
        # (loaded with its next message) names the loaded one alone.
        for chat_id, shown in ((older, "demo · ctx 7/512"), (replied, f"demo · ctx {used}/512"), (other, "demo")):
            app.query_one(ChatList).post_message(ChatList.Opened(chat_id))
            await until(pilot, lambda opened=chat_id: pane.chat_id == opened, "the chat opened")
            await settled(pilot)
            assert app.status_line.model_name == shown


def test_context_used_reads_the_last_reply_even_from_an_older_or_odd_row() -> None:
    def reply(stats: object) -> object:
        return type("Row", (), {"role": "assistant", "stats": stats})()

    user = type("Row", (), {"role": "user", "stats": None})()
    assert context_used([]) == 0 and context_used([user]) == 0
    assert context_used([reply({"context_used": 5}), user, reply({"context_used": 9}), user]) == 9
    assert context_used([reply({"prompt_tokens": 20, "generated_tokens": 3})]) == 23  # kept before context_used
    assert context_used([reply({"context_used": "many"})]) == 0
    assert context_used([reply(["not", "a", "mapping"])]) == 0


@run_async
async def test_at_60x20_with_the_list_the_header_keeps_its_title_and_the_prompt_its_hints(tmp_path: Path) -> None:
    stored_chat(LONG_TITLE)
    app = chat_app(tmp_path, chat_backend=FakeBackend)
    async with app.run_test(size=(60, 20)) as pilot:
        header, prompt = app.query_one("#chat-header"), app.query_one("#chat-prompt")
        await until(pilot, lambda: len(app.query_one(ChatView).bubbles) == 2, "the chat shown")
        await pilot.pause()
        assert prompt.placeholder == PLACEHOLDERS[0]  # the list hidden: the whole width

        wide = str(header.content)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: prompt.content_size.width < len(PLACEHOLDERS[0]), "the column narrowed")
        await until(pilot, lambda: str(header.content) != wide, "the header fitted to the narrower column")
        await settled(pilot)  # the prompt's resize handled
        assert prompt.placeholder == PLACEHOLDERS[1] and len(prompt.placeholder) <= prompt.content_size.width
        text = str(header.content)
        assert text.startswith("Reversing") and text.endswith("… · demo (not loaded)")
        assert len(text) <= header.content_region.width

        await pilot.press("ctrl+l")  # the list hidden again: the long forms come back
        await until(pilot, lambda: prompt.placeholder == PLACEHOLDERS[0], "the whole placeholder back")


def test_the_prompt_texts_take_the_longest_form_that_fits() -> None:
    assert fitting(PLACEHOLDERS, 0) == PLACEHOLDERS[0]  # not laid out yet
    assert fitting(PLACEHOLDERS, 56) == PLACEHOLDERS[0]
    assert fitting(PLACEHOLDERS, 32) == PLACEHOLDERS[1]
    assert fitting(PLACEHOLDERS, 5) == PLACEHOLDERS[-1]  # nothing fits: the shortest, cut by the prompt
    assert fitting(EDITING_TITLES, 32) == EDITING_TITLES[-1]
    assert fit_header("Python one-liner", "demo (loads with the first message)", 34, "demo (not loaded)") == (
        "Python one-liner · demo (not loaded)"[:34 - len(" · demo (not loaded)") - 1] + "… · demo (not loaded)")
    assert fit_header("Hi", "demo (loads with the first message)", 80, "demo (not loaded)") == (
        "Hi · demo (loads with the first message)")
    # Where the full state leaves the title enough room, it stays in full words.
    assert fit_header("A" * 40, "demo (loads with the first message)", 58, "demo (not loaded)").endswith(
        "… · demo (loads with the first message)")
