"""The conversation view: one bubble per stored message, but only the messages near the view are mounted.

A chat of a thousand messages would take seconds to mount and parse as Markdown, and every key would then pay for
the layout of all of it. So the view holds every stored message but mounts a window of them: the last ``WINDOW``
when a chat opens, ``BATCH`` more above (or below) when the user scrolls or selects within a screen of the window's
edge, and unmounts the far side beyond ``MAX_MOUNTED``. Mounting or unmounting above the view keeps what the user
sees in place. Selection (↑/↓) walks all messages, mounting as it goes; ``reveal`` jumps to any message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from textual.containers import VerticalScroll
from textual.message import Message

from tuillm.core.chat.store import Message as StoredMessage
from tuillm.tui import keymap
from tuillm.tui.widgets.chat_bubble import MessageBubble

WINDOW = 12  # bubbles mounted when a chat opens: more than a tall terminal shows
BATCH = 10  # mounted at once when the user nears the window's edge
MAX_MOUNTED = 50  # beyond it the far side is unmounted (its Markdown is parsed again if the user comes back)


def following_after(following: bool, old: float, new: float, end: float) -> bool:
    """Whether a view keeps its growing text's end in view after its scroll offset moved from ``old`` to ``new``
    (``end``: its ``max_scroll_y``). Only a move up stops following, and reaching the end starts it again. A move down
    short of the end is the user scrolling back, or a ``scroll_end`` landing short of text that grew meanwhile: that
    must not read as the user having left the end."""
    at_end = new >= end - 1
    return at_end if new < old or at_end else following


class ChatView(VerticalScroll):
    """The conversation. Focus it (Shift+Tab from the prompt) to pick a message with ↑/↓ and copy it."""

    HELP_TITLE = "Chat messages"
    can_focus = True
    BINDINGS = keymap.CHAT_MESSAGES

    class CopyRequested(Message):
        def __init__(self, bubble: MessageBubble, code: bool) -> None:
            super().__init__()
            self.bubble = bubble
            self.code = code

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.messages: list[StoredMessage] = []  # the whole chat; bubbles show messages[start:start + mounted]
        self.start = 0
        self.streaming = False  # the last message, if incomplete, is the reply being streamed
        self.label: Callable[[str], str] = str  # how a message's model is named
        self.selected: int | None = None  # an index into messages; None: the last mounted one
        self._keep_selection = False  # a reveal chose the selection that focusing would reset
        self._growing = False  # a mount at an edge is under way (scrolling asks again and again)
        self._window_lock = asyncio.Lock()  # one change of the mounted window at a time (mounts await, scrolls don't)
        self._placing = False  # the window moved to a far message: the scroll offset is not the user's until shown
        # Follow new text only while the user is at the bottom: scrolling up stops it, scrolling back resumes.
        # (Not Widget.anchor(): it leaves a negative scroll offset when the content is shorter than the view.)
        self.at_bottom = True

    # --- following and the window's edges ---------------------------------------------------------------------------
    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self._placing:
            self.at_bottom = following_after(self.at_bottom, old_value, new_value, self.max_scroll_y)
            self._check_edges()

    def follow(self) -> None:
        """Called when the content grew: keep the end in view if the user was there, once laid out."""
        if self.at_bottom:
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        # Asked again when it runs: a key that moved the selection up meanwhile must not be undone (Textual's own
        # deferred scroll_end would scroll to the end whatever happened since it was asked for).
        if self.at_bottom:
            self.scroll_end(animate=False, immediate=True)

    def follow_from_now(self) -> None:
        """The user sent a message: show it and follow the reply, wherever the view was (scrolling up while the
        reply streams stops following again, through ``watch_scroll_y``)."""
        self.at_bottom = True
        self.follow()

    def on_message_bubble_resized(self, event: MessageBubble.Resized) -> None:
        event.stop()
        # The layout that resized the bubble gave this view its new height too: scrolled now, the scroll joins the
        # layout that the size change asks for anyway, instead of costing one of its own after it.
        self._to_end()

    @property
    def bubbles(self) -> list[MessageBubble]:
        return list(self.query_children(MessageBubble))

    @property
    def end(self) -> int:
        """One past the last mounted message."""
        return self.start + len(self.children)

    def _bubble(self, index: int) -> MessageBubble:
        message = self.messages[index]
        streaming = self.streaming and not message.complete and index == len(self.messages) - 1
        return MessageBubble.of(message, streaming=streaming, label=self.label)

    def _edge(self) -> bool | None:
        """Within a screen of the window's top (True) or bottom (False) with more beyond it; else None."""
        height = self.size.height
        # Following the end, the view is near the top only when all it holds is shorter than two screens (more is
        # needed to scroll up); otherwise the scroll offset is a moment's (the content changed, the end not yet
        # scrolled to).
        if self.start > 0 and self.scroll_y < height and (not self.at_bottom or self.max_scroll_y < height):
            return True
        if self.end < len(self.messages) and self.scroll_y > self.max_scroll_y - height:
            return False
        return None

    def _check_edges(self) -> None:
        """Near an edge of the window: mount the next batch there."""
        if self._growing or self._placing or not self.is_mounted or self._edge() is None:
            return
        self._growing = True
        self.call_later(self._grow)

    async def _grow(self) -> None:
        try:
            async with self._window_lock:
                up = self._edge() if not self._placing else None  # again: the window may have changed meanwhile
                if up:
                    await self._mount_above(max(0, self.start - BATCH))
                elif up is not None:
                    await self._mount_below(min(len(self.messages), self.end + BATCH))
        finally:
            self.call_after_refresh(self._grown)

    def _grown(self) -> None:
        self._growing = False
        self._check_edges()  # still near the edge (short messages): the next batch

    def _hold(self, anchor: MessageBubble) -> Callable[[], None]:
        """Record where ``anchor`` is in the view; the returned callable puts it back there (after a layout)."""
        offset = anchor.virtual_region.y - self.scroll_y

        def put_back() -> None:
            if self.at_bottom:
                self.scroll_end(animate=False, immediate=True)
            elif anchor.parent is self:
                self.scroll_to(y=anchor.virtual_region.y - offset, animate=False, immediate=True)

        return put_back

    async def _mount_above(self, start: int) -> None:
        if start >= self.start:
            return
        bubbles = self.bubbles
        new = [self._bubble(i) for i in range(start, self.start)]
        self.start = start
        if bubbles:
            put_back = self._hold(bubbles[0])
            await self.mount_all(new, before=bubbles[0])
            self.call_after_refresh(put_back)
        else:
            await self.mount_all(new)
        excess = len(bubbles) + len(new) - MAX_MOUNTED
        if excess > 0 and not self._streamed():
            await self.remove_children(bubbles[-excess:])

    def _streamed(self) -> bool:
        """A reply streams into the last bubble (which must stay mounted: the stream draws into it)."""
        return self.streaming and self.end == len(self.messages)

    async def _mount_below(self, end: int) -> None:
        if end <= self.end:
            return
        await self.mount_all([self._bubble(i) for i in range(self.end, end)])
        await self._trim_top()

    async def _trim_top(self) -> None:
        """Unmount the bubbles above the last MAX_MOUNTED, keeping what the user sees in place."""
        bubbles = self.bubbles
        excess = len(bubbles) - MAX_MOUNTED
        if excess > 0:
            put_back = self._hold(bubbles[excess])
            await self.remove_children(bubbles[:excess])
            self.start += excess
            self.call_after_refresh(put_back)

    async def _rebuild(self, start: int, end: int, *, bottom: bool) -> None:
        """Mount messages[start:end] in place of what is mounted; ``bottom``: the view shows the end."""
        self.at_bottom, self._placing = bottom, not bottom
        await self.remove_children()
        self.start = start
        await self.mount_all([self._bubble(i) for i in range(start, end)])
        self.follow()

    async def bring(self, index: int) -> None:
        """Mount message ``index`` (and those between it and the window), or move the window to it if it is far."""
        async with self._window_lock:
            await self._bring(index)

    async def _bring(self, index: int) -> None:
        if self.start <= index < self.end:
            return
        if self.start - BATCH <= index < self.start:
            await self._mount_above(max(0, self.start - BATCH))
        elif self.end <= index < self.end + BATCH:
            await self._mount_below(min(len(self.messages), self.end + BATCH))
        elif self._streamed() and index < self.start:
            await self._mount_above(index)  # all the way up: moving the window would unmount the streaming reply
        else:
            start = max(0, min(index - WINDOW // 2, len(self.messages) - WINDOW))
            await self._rebuild(start, min(len(self.messages), start + WINDOW), bottom=False)

    # --- the stored messages ----------------------------------------------------------------------------------------
    async def show(self, stored: Sequence[StoredMessage], streaming: bool, label: Callable[[str], str]) -> None:
        """Make the bubbles match the stored messages: keep the common start, update changed messages, remove what
        was deleted (regenerate, edit), mount what is new if the window reaches the end. The work is in what
        changed and what is mounted, not in the chat's length."""
        async with self._window_lock:
            await self._show(stored, streaming, label)
        self.call_after_refresh(self._check_edges)

    async def _show(self, stored: Sequence[StoredMessage], streaming: bool, label: Callable[[str], str]) -> None:
        old, self.messages, self.streaming, self.label = self.messages, list(stored), streaming, label
        new = self.messages
        common = 0
        limit = min(len(old), len(new))
        while common < limit and old[common].id == new[common].id:
            common += 1
        if self.selected is not None and self.selected >= common:
            self.selected = None
        bubbles = self.bubbles
        at_end = self.start + len(bubbles) == len(old)
        if common <= self.start or (len(new) - common > MAX_MOUNTED) or (self.at_bottom and not at_end):
            # Another chat, or the window is far from where the change is: open at the end.
            await self._rebuild(max(0, len(new) - WINDOW), len(new), bottom=True)
        else:
            keep = common - self.start
            if bubbles[keep:]:
                await self.remove_children(bubbles[keep:])
            for bubble, message in zip(bubbles[:keep], new[self.start:common], strict=False):
                if bubble.stored != message or bubble.streaming:
                    await bubble.update_from(message, label)
            if at_end and common < len(new):
                await self.mount_all([self._bubble(i) for i in range(common, len(new))])
                await self._trim_top()
            self.follow()

    def last_bubble(self) -> MessageBubble | None:
        """The newest message's bubble, if it is mounted."""
        bubbles = self.bubbles
        return bubbles[-1] if bubbles and self.end == len(self.messages) else None

    # --- selection --------------------------------------------------------------------------------------------------
    def _current(self) -> int:
        return self.end - 1 if self.selected is None else self.selected

    def selected_bubble(self) -> MessageBubble | None:
        """The selected message's bubble (None when nothing is shown, or it is not mounted)."""
        index = self._current()
        return self.bubbles[index - self.start] if self.start <= index < self.end else None

    def _mark(self, focused: bool = True) -> None:
        current = self.selected_bubble() if focused else None
        for bubble in self.bubbles:
            bubble.set_class(bubble is current, "-selected")
        if current is not None:
            self.call_after_refresh(self._scroll_to_bubble, current)  # after the layout of what was just mounted
        else:
            self._placing = False

    def _scroll_to_bubble(self, bubble: MessageBubble) -> None:
        if bubble.parent is self:
            self.scroll_to_widget(bubble, animate=False, immediate=True,
                                  top=bubble.outer_size.height > self.size.height)
        if self._placing:
            self._placing = False
            self.at_bottom = self.scroll_y >= self.max_scroll_y - 1
            self._check_edges()

    def on_focus(self) -> None:
        if not self._keep_selection:
            self.selected = None  # the newest message shown first
        self._keep_selection = False
        self._mark()

    def on_blur(self) -> None:
        self._mark(focused=False)

    async def action_select(self, step: int) -> None:
        if not self.messages:
            return
        self.selected = max(0, min(len(self.messages) - 1, self._current() + step))
        if self.selected < len(self.messages) - 1:
            self.at_bottom = False  # an older message chosen: new text must not scroll it away
        await self.bring(self.selected)
        self._mark()

    async def reveal(self, message_id: int) -> bool:
        """Bring the message into view and select it (focusing the view); False if it is not in this chat."""
        index = next((i for i, m in enumerate(self.messages) if m.id == message_id), None)
        if index is None:
            return False
        await self.bring(index)
        self.selected = index
        if not self.has_focus:
            self._keep_selection = True
            self.focus()
        self._mark()
        return True

    async def _copy(self, code: bool) -> None:
        if not self.messages:
            return
        await self.bring(self._current())
        self._mark()
        bubble = self.selected_bubble()
        if bubble is not None:
            self.post_message(self.CopyRequested(bubble, code=code))

    async def action_copy_message(self) -> None:
        await self._copy(code=False)

    async def action_copy_code(self) -> None:
        await self._copy(code=True)
