"""The Chat pane's drafts (a mixin of ``ChatPane``): what the user typed and has not sent is kept per chat, in the
chat's row of the store, so switching chats, editing the last message (Ctrl+G) and a restart never lose it.

``draft`` is the open chat's unsent text: the prompt's text, except while the prompt holds the last message being
edited, when the draft waits to come back. It is written to the store a moment after typing stops (one write per
pause, not per key), and at once when the chat is left or the app closes. A chat not created yet (before its first
message) keeps its draft in memory for the session.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.timer import Timer
from textual.widgets import TextArea

from tuillm.core.chat.store import ChatStore, StoreError
from tuillm.tui.widgets.chat_messages import ChatColumn

DRAFT_SAVE_S = 0.5  # after the last key: a killed app loses at most this much typing


class ChatDrafts:
    # What this uses of the pane (ChatPane and its Widget base define them); a plain class, as ChatMemory.
    store: ChatStore | None
    chat_id: int | None
    editing: bool
    column: ChatColumn
    notify: Callable[..., None]
    set_timer: Callable[..., Timer]
    draft: str = ""
    _new_chat_draft: str = ""  # the draft of the chat that its first message will create
    _draft_timer: Timer | None = None
    _draft_failed: bool = False  # a failed write was reported: the next ones are not (one notice, not one a key)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area is not self.column.prompt or self.editing:
            return  # the edited last message is not the draft
        self.draft = event.text_area.text
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_SAVE_S, self.save_draft)

    def save_draft(self) -> None:
        """Write the open chat's draft now."""
        if self._draft_timer is not None:
            self._draft_timer.stop()
            self._draft_timer = None
        if self.chat_id is None:
            self._new_chat_draft = self.draft
            return
        if self.store is None:
            return
        try:
            self.store.set_draft(self.chat_id, self.draft)
        except StoreError as exc:
            if not self._draft_failed:
                self.notify(f"{exc}; the draft is not kept", title="Chat", severity="error")
            self._draft_failed = True

    def show_draft(self) -> None:
        """Put the open chat's draft in the prompt (the chat was just opened)."""
        if self.chat_id is None:
            self.draft = self._new_chat_draft
        else:
            try:
                self.draft = self.store.get_chat(self.chat_id).draft if self.store is not None else ""
            except StoreError:
                self.draft = ""
        self.column.stop_editing(self.draft)

    def hold_draft(self) -> None:
        """The prompt is about to show the last message for editing: what it holds now is the draft."""
        self.draft = self.column.prompt.text
        self.save_draft()

    def after_sent(self, editing: bool, sent: str = "") -> None:
        """The prompt's text (``sent``) was sent: an edited message gives the prompt its draft back, a new one
        empties it, except for what was typed after it while the model loaded (the message waits in the prompt)."""
        if not editing:
            now = self.column.prompt.text
            self.draft = "" if not sent or now == sent else now.removeprefix(sent).lstrip()
        self.column.stop_editing(self.draft)
        self.save_draft()
