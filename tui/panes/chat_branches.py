"""The Chat pane's branches (a mixin of ``ChatPane``): nothing said in a chat is lost. Answering again (Ctrl+R)
keeps the earlier replies, and editing a message sends the new text as a new branch from there, the original and
what followed it kept (``core.chat.branches``); a header's ‹2/3› says which of the alternatives is shown.

The keys act on the message selected in the messages view while it has the focus (Shift+Tab from the prompt, ↑/↓
to pick), else on the newest message that has alternatives (browsing) or on the last message (fork). The letters
work only in the messages view, so they never take typing; Alt+←/→ browse from the prompt as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future

from textual.app import SystemCommand

from tuillm.core.chat.conversation import Conversation
from tuillm.core.chat.events import ReplyDone
from tuillm.core.chat.store import ChatStore, StoreError
from tuillm.core.chat.store import Message as StoredMessage
from tuillm.tui.widgets.chat_messages import ChatColumn

BUSY = "a reply is on its way: Esc stops it"
# Actions of letter keys: taken only while the messages view has the focus (elsewhere the key goes on).
VIEW_ACTIONS = frozenset({"fork", "edit_message"})
# The prompt's title, longest first: the one that fits its width is shown.
EDITING_EARLIER = ("Editing message {n} · Enter sends it as a new branch · Esc cancels",
                   "Editing message {n} · Esc cancels")


class ChatBranches:
    # What this uses of the pane (ChatPane and its other mixins define them); a plain class, as ChatDrafts.
    store: ChatStore | None
    chat_id: int | None
    busy: bool
    model_loading: bool
    editing: bool
    column: ChatColumn
    notify: Callable[..., None]
    refresh_bindings: Callable[[], None]
    stored_messages: Callable[[], list[StoredMessage]]
    hold_draft: Callable[[], None]
    _sync_view: Callable[[], Awaitable[None]]
    _switch_to: Callable[[int | None], None]
    focus_default: Callable[[], None]
    call_later: Callable[..., bool]
    editing_message: int | None = None  # the user message the prompt holds for editing

    def branch_commands(self) -> Iterable[SystemCommand]:
        # call_later runs the async actions on the loop (a palette callback is called, not awaited).
        yield SystemCommand("Fork chat", "A new chat with the conversation up to the selected (or last) message",
                            lambda: self.call_later(self.action_fork))
        yield SystemCommand("Next alternative", "Show the next reply or edit at this point (‹2/2›)",
                            lambda: self.call_later(self.action_alt_next))
        yield SystemCommand("Previous alternative", "Show the previous reply or edit at this point (‹1/2›)",
                            lambda: self.call_later(self.action_alt_prev))
        yield SystemCommand("Edit a message", "Edit the selected (or last) message of yours: a new branch, the "
                            "original kept", self.action_edit_message)

    def branch_action_allowed(self, action: str) -> bool:
        return action not in VIEW_ACTIONS or self.column.view.has_focus

    def selected_message(self) -> StoredMessage | None:
        """The message selected in the messages view, when the view has the focus."""
        view = self.column.view
        bubble = view.selected_bubble() if view.has_focus else None
        return None if bubble is None else next((m for m in self.stored_messages() if m.id == bubble.message_id),
                                                None)

    def selected_id(self) -> int | None:
        """The selected message's id (Ctrl+R answers it, or the question of a reply, again); None: not in the view."""
        message = self.selected_message()
        return None if message is None else message.id

    def _idle(self) -> bool:
        if self.busy:
            self.notify(BUSY, title="Chat", severity="warning")
        return not self.busy

    # --- alternatives ---------------------------------------------------------------------------------------------
    async def action_alt_prev(self) -> None:
        await self._browse(-1)

    async def action_alt_next(self) -> None:
        await self._browse(1)

    async def _browse(self, step: int) -> None:
        if not self._idle() or self.store is None:
            return
        message = self.selected_message()
        if message is None:  # not in the view: the newest point that has alternatives
            message = next((m for m in reversed(self.stored_messages()) if m.alternatives), None)
        if message is None or message.alternatives is None:
            self.notify("no alternatives here: Ctrl+R answers again, editing a message adds one", title="Chat")
            return
        try:
            other = self.store.alternative(message.id, step)
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return
        if other is None:
            place, count = message.alternatives
            self.notify(f"‹{place}/{count}› is the {'first' if step < 0 else 'last'}", title="Chat")
            return
        await self._sync_view()
        if self.column.view.has_focus:
            await self.column.view.reveal(other)  # the selection stays on the point browsed

    # --- fork -----------------------------------------------------------------------------------------------------
    async def action_fork(self) -> None:
        if not self._idle() or self.store is None:
            return
        message = self.selected_message()
        if message is None:
            shown = self.stored_messages()
            message = shown[-1] if shown else None
        if message is None:
            self.notify("nothing to fork yet", title="Chat", severity="warning")
            return
        try:
            chat = self.store.fork(message.id)
        except StoreError as exc:
            self.notify(str(exc), title="Chat", severity="error")
            return
        self._switch_to(chat.id)
        await self._sync_view()
        self.focus_default()
        self.notify(f"a new chat with the conversation up to that message: {chat.title}", title="Forked")

    # --- editing any message ----------------------------------------------------------------------------------------
    def action_edit_message(self) -> None:
        if not self._idle():
            return
        if self.model_loading:  # a message waiting for the model would be sent with the edit open, and the edit lost
            self.notify("the model is still loading", title="Chat", severity="warning")
            return
        message = self.selected_message()
        if message is None:
            users = [m for m in self.stored_messages() if m.role == "user"]
            message = users[-1] if users else None
        if message is None or message.role != "user":
            self.notify("only your own messages can be edited (the model's: Ctrl+R answers again)", title="Chat",
                        severity="warning")
            return
        self.start_edit(message)

    def start_edit(self, message: StoredMessage) -> None:
        """The prompt takes ``message``'s text; Enter sends it in its place, as a new branch (the draft waits)."""
        if not self.editing:
            self.hold_draft()
        shown = [m.id for m in self.stored_messages()]
        users = [m for m in self.stored_messages() if m.role == "user"]
        if users and users[-1].id != message.id and message.id in shown:
            n = shown.index(message.id) + 1
            self.column.start_editing(message.content, [title.format(n=n) for title in EDITING_EARLIER])
        else:
            self.column.start_editing(message.content)
        self.editing, self.editing_message = True, message.id
        self.refresh_bindings()

    def edit_turn(self, text: str) -> Callable[[Conversation], Future[ReplyDone]]:
        """The turn that sends the edited text in place of the message being edited."""
        message_id = self.editing_message
        if message_id is None:
            return lambda conv: conv.edit_and_resend(text)
        return lambda conv: conv.edit(message_id, text)
