"""The streaming reply's tail: where a stream splits into finished Markdown blocks, and the plain-text tail that
draws the block still being written (its rows, its height in steps, code in progress)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from rich.style import Style
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tests.tui.app_helpers import run_async, until
from tuillm.tui.widgets.chat_bubble import MessageBubble
from tuillm.tui.widgets.stream_tail import BOLD, BULLET, ITALIC, QUOTE, STEP, StreamTail, finished_length, styled_line


def split(text: str) -> tuple[str, str]:
    done = finished_length(text)
    return text[:done], text[done:]


def test_finished_blocks_end_at_a_blank_line_and_a_line_in_progress_is_not_one() -> None:
    assert split("Once upon a time") == ("", "Once upon a time")
    assert split("One line.\nTwo") == ("", "One line.\nTwo")
    assert split("First paragraph.\n\nSecond") == ("First paragraph.\n\n", "Second")
    assert split("A.\n\nB.\n\n") == ("A.\n\nB.\n\n", "")
    assert split("A.\n\n   ") == ("A.\n\n", "   ")  # a blank line without its newline is still being written
    assert split("- one\n- two\n\n- thr") == ("- one\n- two\n\n", "- thr")


def test_a_fenced_block_ends_at_its_closing_fence_not_at_a_blank_line_inside_it() -> None:
    code = "Look:\n\n```python\ndef f():\n\n    return 1\n"
    assert split(code) == ("Look:\n\n", "```python\ndef f():\n\n    return 1\n")
    assert split(code + "```") == ("Look:\n\n", "```python\ndef f():\n\n    return 1\n```")  # no newline yet
    assert split(code + "```\nAfter") == (code + "```\n", "After")
    # Only the same fence, as long or longer, with nothing after it, closes the block.
    assert split("~~~\na\n```\n\nb\n") == ("", "~~~\na\n```\n\nb\n")
    assert split("````\na\n```\n\n````\n") == ("````\na\n```\n\n````\n", "")
    assert split("```\na\n``` not a close\n\n") == ("", "```\na\n``` not a close\n\n")
    assert split("~~~\na\n~~~~\n") == ("~~~\na\n~~~~\n", "")


CODE = Style(reverse=True)


def styled(line: str) -> tuple[str, list[tuple[str, Style]]]:
    text = styled_line(line, CODE)
    return text.plain, [(text.plain[span.start:span.end], span.style) for span in text.spans]


def test_a_line_is_styled_as_the_markdown_will_show_it_without_its_markers() -> None:
    assert styled("## Title with `code`") == ("Title with code", [("code", CODE), ("Title with code", BOLD)])
    assert styled("- **bold**, *em*, _em_, __bold__ and `a * b`") == (
        f"{BULLET}bold, em, em, bold and a * b",
        [("bold", BOLD), ("em", ITALIC), ("em", ITALIC), ("bold", BOLD), ("a * b", CODE)])
    assert styled("  * nested") == (f"  {BULLET}nested", [])
    assert styled("> quoted")[0] == f"{QUOTE}quoted"
    assert styled("``a ` b`` and ``` alone") == ("a ` b and ``` alone", [("a ` b", CODE)])


def test_markers_not_closed_yet_and_lookalikes_stay_as_written() -> None:
    for line in ("**being writ", "a `span in prog", "snake_case_name and 2 * 3 * 4", "---", "#hashtag", "```"):
        assert styled(line) == (line, [])


class TailApp(App):
    CSS = "StreamTail { width: 24; }"

    def compose(self) -> ComposeResult:
        yield StreamTail()


def rows(tail: StreamTail) -> list[str]:
    return [tail.render_line(y).text.rstrip() for y in range(tail.size.height)]


@contextlib.asynccontextmanager
async def a_tail() -> AsyncIterator[tuple[Pilot, StreamTail]]:
    app = TailApp()
    async with app.run_test(size=(40, 20)) as pilot:
        await pilot.pause()
        yield pilot, app.query_one(StreamTail)


async def show(pilot: Pilot, text: str) -> list[str]:
    """The tail's rows once it has drawn ``text``."""
    tail = pilot.app.query_one(StreamTail)
    tail.show(text)
    await pilot.pause()
    return rows(tail)


@run_async
async def test_the_tail_wraps_its_text_and_grows_in_steps() -> None:
    async with a_tail() as (pilot, tail):
        assert tail.content_size.width == 24
        assert await show(pilot, "Once upon") == ["Once upon"] + [""] * (STEP - 1)
        assert tail.size.height == STEP
        story = "Once upon a time there was a lighthouse keeper"
        assert (await show(pilot, story))[:2] == ["Once upon a time there", "was a lighthouse keeper"]
        words = [f"line {i}" for i in range(STEP - 1)]
        shown = await show(pilot, story + "\n" + "\n".join(words) + "\n")
        assert tail.size.height == 2 * STEP  # STEP + 2 rows (the last empty, being written): the next step
        assert shown[:STEP + 2] == ["Once upon a time there", "was a lighthouse keeper", *words, ""]
        # Another block (the last went to the Markdown): drawn from scratch, and the height back to one step.
        assert await show(pilot, "Then") == ["Then"] + [""] * (STEP - 1)
        assert tail.size.height == STEP


@run_async
async def test_code_in_progress_is_drawn_as_code_without_its_fence() -> None:
    async with a_tail() as (pilot, tail):
        assert (await show(pilot, "```python\ndef f():\n    return 1"))[:2] == ["def f():", "    return 1"]
        assert tail.has_class("-code")
        assert (await show(pilot, "Plain"))[0] == "Plain" and not tail.has_class("-code")
        # A code block that has ended, with more after it: not one block of code any more, shown as written.
        assert (await show(pilot, "```\nx = 1\n```\nThen"))[:4] == ["```", "x = 1", "```", "Then"]
        assert not tail.has_class("-code")


@run_async
async def test_a_fenced_block_that_ended_in_the_tail_is_not_styled_but_the_text_after_it_is() -> None:
    async with a_tail() as (pilot, tail):
        shown = await show(pilot, "- a\n```\n- b **c**\n```\n- d **e**")
        assert shown[:5] == [f"{BULLET}a", "```", "- b **c**", "```", f"{BULLET}d e"]


@run_async
async def test_a_wider_tail_wraps_again() -> None:
    async with a_tail() as (pilot, tail):
        await show(pilot, "Once upon a time there was a lighthouse keeper")
        tail.styles.width = 36
        await until(pilot, lambda: tail.content_size.width == 36, "the tail resized")
        await pilot.pause()
        assert rows(tail)[:2] == ["Once upon a time there was a", "lighthouse keeper"]


class BubbleApp(App):
    def compose(self) -> ComposeResult:
        yield MessageBubble("assistant", "", streaming=True)


@run_async
async def test_a_streaming_bubble_moves_finished_blocks_to_the_markdown_when_its_tail_is_full() -> None:
    app = BubbleApp()
    async with app.run_test(size=(60, 30)) as pilot:
        bubble = app.query_one(MessageBubble)
        tail = bubble.query_one(StreamTail)
        await pilot.pause()
        await bubble.stream("# Title\n\nOnce upon")
        assert (bubble.markdown.source, tail.text) == ("", "# Title\n\nOnce upon")  # the tail has room
        story = "".join(f" a time {i}.\n\n" for i in range(STEP))
        await bubble.stream(story + "```\ncode\n")
        # Full: the finished blocks went to the Markdown at once; the code block in progress stays in the tail.
        assert bubble.markdown.source == "# Title\n\nOnce upon" + story
        assert tail.text == "```\ncode\n" and tail.has_class("-code")
        assert bubble.text_shown == "# Title\n\nOnce upon" + story + "```\ncode\n"
        await pilot.pause()
        assert len(bubble.markdown.children) == 1 + STEP  # the heading and a paragraph per line: a block each
        text = bubble.text_shown + "```"
        await bubble.set_content(text, complete=True, stats=None)
        await pilot.pause()
        assert not bubble.query(StreamTail) and bubble.markdown.source == text == bubble.text_shown
        await bubble.stream("late text")  # a draw after the end changes nothing
        assert bubble.text_shown == text


class StreamingReplyApp(App):
    CSS = "MessageBubble { height: auto; } .bubble-role { text-style: bold; }"

    def compose(self) -> ComposeResult:
        yield MessageBubble("assistant", "", streaming=True)


async def stream_a_reply(pilot: Pilot) -> None:
    """A reply streaming in: its first paragraphs moved to the Markdown (the tail was full), then the code block
    being written in the tail (as code, without its fence) with the tail's rows kept for the text to come."""
    bubble = pilot.app.query_one(MessageBubble)
    await pilot.pause()
    await bubble.stream("Reverse a list **in place** with `items.reverse()`.\n\n")
    await bubble.stream("".join(f"Or *step* {i}.\n\n" for i in range(STEP)))
    await bubble.stream("```python\nitems[::-1]\nlist(reversed(it")
    await pilot.pause()
    assert "```" not in bubble.markdown.source and bubble.query_one(StreamTail).has_class("-code")


def test_a_reply_while_it_streams(snap_compare) -> None:
    assert snap_compare(StreamingReplyApp(), terminal_size=(60, 30), run_before=stream_a_reply)


async def stream_markdown(pilot: Pilot) -> None:
    """A reply whose tail holds Markdown being written: a heading, a list with bold and code, a quote, and a bold
    span not closed yet."""
    bubble = pilot.app.query_one(MessageBubble)
    await pilot.pause()
    await bubble.stream("## Steps\n- **Open** the file with `open(path)`\n- Read it *line by line*\n"
                        "> It stays open until closed.\n\nThen **clo")
    await pilot.pause()
    assert not bubble.markdown.source  # all in the tail


def test_a_reply_s_markdown_while_it_streams(snap_compare) -> None:
    assert snap_compare(StreamingReplyApp(), terminal_size=(60, 16), run_before=stream_markdown)
