"""Branches in the Chat pane, driven with Pilot at 80x24: a regenerated reply and an edited message keep what they
replace as alternatives, browsable with keys; fork makes a new chat. The demo model through real llama.cpp where a
reply is needed, a real SQLite file always."""

from __future__ import annotations

from pathlib import Path

from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SHORT, SIZE, chat_app, chat_pane, record_notifications, send, wait_idle
from tuillm.core.chat.store import ChatStore
from tuillm.core.llama.options import Sampling


def shown(app) -> list[tuple[int | None, str, tuple[int, int] | None]]:
    """What the messages view shows: each bubble's message id, text and alternatives."""
    return [(b.message_id, b.content, b.alternatives) for b in app.query_one("#chat-view").bubbles]


def header(bubble) -> str:
    return str(bubble.query_one(".bubble-role").content)


def branched_chat() -> tuple[int, list[int]]:
    """A stored chat whose reply was answered again (two alternatives), the second's branch going on."""
    with ChatStore() as store:
        chat = store.create_chat("Colours", params=SHORT.to_json())
        question = store.add_message(chat.id, "user", "Name a colour.")
        first = store.add_message(chat.id, "assistant", "Red.")
        second = store.add_message(chat.id, "assistant", "Blue.", parent=question.id)
        later = store.add_message(chat.id, "user", "Another one?")
        return chat.id, [question.id, first.id, second.id, later.id]


@run_async
async def test_regenerate_keeps_the_first_reply_and_keys_browse_back(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = Sampling(temperature=1.0, max_tokens=8, seed=1)
        await send(pilot, "Tell me a word.")
        await wait_idle(pilot)
        (question, _, _), (first_id, first_text, first_alts) = shown(app)
        assert first_alts is None
        pane.store.update_chat(pane.chat_id, params=Sampling(temperature=1.0, max_tokens=8, seed=2).to_json())
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        (_, _, _), (second_id, second_text, alts) = shown(app)
        assert second_id != first_id and alts == (2, 2)
        assert "‹2/2›" in header(app.query_one("#chat-view").bubbles[1])
        # From the prompt (Alt+←): the first reply is back, as it was; the prompt's text is untouched.
        prompt = app.query_one("#chat-prompt")
        prompt.text = "half typed"
        await pilot.press("alt+left")
        await pilot.pause()
        assert shown(app)[1] == (first_id, first_text, (1, 2)) and prompt.text == "half typed"
        assert "‹1/2›" in header(app.query_one("#chat-view").bubbles[1])
        assert [m["content"] for m in pane.store.conversation(pane.chat_id)] == ["Tell me a word.", first_text]
        seen = record_notifications(app)
        await pilot.press("alt+left")  # already the first: said, nothing moves
        await pilot.pause()
        assert shown(app)[1][0] == first_id and any("‹1/2› is the first" in n for n in seen)
        # In the messages view, ] and [ browse the selected message; the selection stays on it.
        await pilot.press("shift+tab")
        assert app.focused is app.query_one("#chat-view")
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert shown(app)[1] == (second_id, second_text, (2, 2))
        assert app.query_one("#chat-view").selected_bubble().message_id == second_id
        # Ctrl+R on the reply selected in the view answers its question again: a third alternative, shown.
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert [m for m, _, _ in shown(app)][0] == question and shown(app)[1][2] == (3, 3)
        assert len(pane.store.messages(pane.chat_id)) == 2
        # And on the question selected (the view kept the focus): answered again, a fourth.
        assert app.focused is app.query_one("#chat-view")
        await pilot.press("up")
        assert app.query_one("#chat-view").selected_bubble().message_id == question
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert shown(app)[1][2] == (4, 4)


@run_async
async def test_letters_type_in_the_prompt_and_act_in_the_view(tmp_path: Path) -> None:
    chat_id, (question, first, second, later) = branched_chat()
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: len(shown(app)) == 3, "the stored chat shown")
        assert pane.chat_id == chat_id
        assert [m for m, _, _ in shown(app)] == [question, second, later]
        assert shown(app)[1][2] == (2, 2)
        prompt = app.query_one("#chat-prompt")
        prompt.focus()
        await pilot.press("f", "e", "left_square_bracket", "right_square_bracket")
        assert prompt.text == "fe[]" and pane.chat_id == chat_id and not pane.editing  # typed, not acted on
        assert [m for m, _, _ in shown(app)] == [question, second, later]
        prompt.text = ""
        # The view: select the reply (↑ from the newest), browse to the first alternative, its branch ends there.
        await pilot.press("shift+tab", "up")
        assert app.query_one("#chat-view").selected_bubble().message_id == second
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert shown(app) == [(question, "Name a colour.", None), (first, "Red.", (1, 2))]
        # Fork from the selected reply: a new chat holding the conversation up to it, opened and listed.
        await pilot.press("f")
        await pilot.pause()
        assert pane.chat_id != chat_id
        forked = pane.store.get_chat(pane.chat_id)
        assert forked.title == "Colours (fork)" and forked.params == SHORT.to_json()
        assert [(c, a) for _, c, a in shown(app)] == [("Name a colour.", None), ("Red.", None)]
        assert [c.title for c in pane.store.list_chats()][:2] == ["Colours (fork)", "Colours"]
        assert app.focused is prompt
        # The original chat is as it was left.
        assert [m.id for m in pane.store.messages(chat_id)] == [question, first]


@run_async
async def test_edit_an_earlier_message_starts_a_branch_and_keeps_the_draft(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        pane.draft_sampling = SHORT
        await send(pilot, "Name a colour.")
        await wait_idle(pilot)
        await send(pilot, "Name a fruit.")
        await wait_idle(pilot)
        before = [m.id for m in pane.store.messages(pane.chat_id)]
        prompt = app.query_one("#chat-prompt")
        prompt.text = "my draft"
        # Select the first message in the view and press e: the prompt takes its text, the draft waits.
        await pilot.press("shift+tab", "up", "up", "up")
        assert app.query_one("#chat-view").selected_bubble().message_id == before[0]
        seen = record_notifications(app)
        await pilot.press("e")
        assert pane.editing and prompt.text == "Name a colour." and app.focused is prompt
        assert "Editing message 1" in str(prompt.border_title)
        prompt.text = "Name a number."
        await pilot.press("enter")
        await wait_idle(pilot)
        after = pane.store.messages(pane.chat_id)
        assert [(m.role, m.content, m.alternatives) for m in after][0] == ("user", "Name a number.", (2, 2))
        assert len(after) == 2 and after[1].content.strip() and not pane.editing
        assert prompt.text == "my draft"  # the draft is back after the edit was sent
        assert [m for m, _, _ in shown(app)] == [m.id for m in after]
        # Nothing was lost: the first question and its whole conversation are the other branch.
        await pilot.press("alt+left")
        await pilot.pause()
        assert [m for m, _, _ in shown(app)] == before
        # A reply cannot be edited: said, nothing changes.
        await pilot.press("shift+tab")  # the newest message selected: the reply
        assert app.query_one("#chat-view").selected_bubble().message_id == before[-1]
        await pilot.press("e")
        assert not pane.editing and any("only your own messages" in n for n in seen)


@run_async
async def test_a_search_hit_on_another_branch_opens_that_branch(tmp_path: Path) -> None:
    chat_id, (question, first, second, later) = branched_chat()
    with ChatStore() as store:
        other = store.create_chat("Other").id  # the chat open at start: the newest
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await pilot.pause()
        assert pane.chat_id == other
        hit = next(h for h in pane.store.search_messages("Red") if h.message_id == first)  # not on the branch shown
        await pane.open_found((hit.chat_id, hit.message_id))
        await pilot.pause()
        assert pane.chat_id == chat_id
        assert shown(app) == [(question, "Name a colour.", None), (first, "Red.", (1, 2))]
        assert app.query_one("#chat-view").selected_bubble().message_id == first


@run_async
async def test_palette_commands_act_on_the_last_message(tmp_path: Path) -> None:
    chat_id, (question, first, second, later) = branched_chat()
    app = chat_app(tmp_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        pane = chat_pane(app)
        await until(pilot, lambda: len(shown(app)) == 3, "the stored chat shown")
        commands = {c.title: c.callback for c in pane.commands()}
        commands["Previous alternative"]()  # the newest point with alternatives: the reply
        await pilot.pause()
        assert [m for m, _, _ in shown(app)] == [question, first]
        commands["Next alternative"]()
        await pilot.pause()
        assert [m for m, _, _ in shown(app)] == [question, second, later]
        commands["Edit a message"]()  # the last message of yours
        assert pane.editing and app.query_one("#chat-prompt").text == "Another one?"
        await pilot.press("escape")
        assert not pane.editing
        commands["Fork chat"]()  # the whole branch shown
        await pilot.pause()
        assert pane.chat_id != chat_id
        assert [c for _, c, _ in shown(app)] == ["Name a colour.", "Blue.", "Another one?"]
