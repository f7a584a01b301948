"""A stored chat driven by a chat session: send, regenerate, edit and resend, each turn saved while it streams.

Nothing is replaced: a regenerated reply is a new alternative of the earlier ones, an edited message a new
alternative of the original with its own answer (``core.chat.branches``); the chat shows the newest.

This is the glue both front ends share: the CLI (``tuillm chat --save``, or an in-memory store without it) and
the TUI's Chat pane. Calls return at once with a ``Future`` that resolves once the reply is also saved.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from tuillm.core.chat.backend import ChatBackend
from tuillm.core.chat.branches import AT_LEAF, Parent
from tuillm.core.chat.events import ChatEmit, ChatEvent, ReplyDone
from tuillm.core.chat.saver import StreamingSaver
from tuillm.core.chat.store import DEFAULT_TITLE, Chat, ChatStore, Message, StoreError
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import Sampling

__all__ = ["DEFAULT_TITLE", "TITLE_CHARS", "Conversation"]
TITLE_CHARS = 60


class Conversation:
    def __init__(self, session: ChatBackend, store: ChatStore, chat_id: int) -> None:
        self.session = session
        self.store = store
        self.chat_id = chat_id
        store.get_chat(chat_id)  # a StoreError now rather than at the first message

    @classmethod
    def new(cls, session: ChatBackend, store: ChatStore, *, title: str = DEFAULT_TITLE, model: str = "",
            system_prompt: str = "", sampling: Sampling | None = None) -> Conversation:
        chat = store.create_chat(title, model=model, system_prompt=system_prompt,
                                 params=(sampling or Sampling()).to_json())
        return cls(session, store, chat.id)

    @property
    def chat(self) -> Chat:
        return self.store.get_chat(self.chat_id)

    @property
    def sampling(self) -> Sampling:
        return self.chat.sampling

    def set_sampling(self, sampling: Sampling) -> None:
        self.store.update_chat(self.chat_id, params=sampling.to_json())

    def set_system_prompt(self, text: str) -> None:
        self.store.update_chat(self.chat_id, system_prompt=text)

    def send(self, text: str, listener: ChatEmit | None = None) -> Future[ReplyDone]:
        """Add the user's message and stream the reply into a new assistant message."""
        if not text.strip():
            raise TuillmError("the message is empty")
        chat = self.chat
        if chat.title == DEFAULT_TITLE and not self.store.messages(self.chat_id):
            self.store.rename_chat(self.chat_id, text.strip().splitlines()[0][:TITLE_CHARS])
        self.store.add_message(self.chat_id, "user", text)
        return self._reply(listener)

    def regenerate(self, listener: ChatEmit | None = None, *, message: int | None = None) -> Future[ReplyDone]:
        """Answer the last user message again, or ``message`` (a user message; for a reply, its question): the
        earlier replies stay, as alternatives of the new one."""
        if message is None:
            return self._reply(listener, parent=self._last_user().id)
        chosen = self._message(message)
        question = chosen.id if chosen.role == "user" else chosen.parent_id
        if chosen.role not in ("user", "assistant") or question is None:
            raise TuillmError("only a message of the conversation can be answered again")
        return self._reply(listener, parent=question)

    def edit(self, message_id: int, text: str, listener: ChatEmit | None = None) -> Future[ReplyDone]:
        """Send ``text`` in place of the user message ``message_id`` and answer it: a new branch from there (the
        original and what followed it stay, as the alternative before it)."""
        if not text.strip():
            raise TuillmError("the message is empty")
        message = self._message(message_id)
        if message.role != "user":
            raise TuillmError("only your own messages can be edited")
        self.store.add_message(self.chat_id, "user", text, parent=message.parent_id)
        return self._reply(listener)

    def edit_and_resend(self, text: str, listener: ChatEmit | None = None) -> Future[ReplyDone]:
        """Edit the last user message (``edit``)."""
        return self.edit(self._last_user().id, text, listener)

    def _message(self, message_id: int) -> Message:
        try:
            message = self.store.get_message(message_id)
        except StoreError:
            message = None
        if message is None or message.chat_id != self.chat_id:
            raise TuillmError(f"this chat has no message {message_id}")
        return message

    def _last_user(self) -> Message:
        users = [m for m in self.store.messages(self.chat_id) if m.role == "user"]
        if not users:
            raise TuillmError("this chat has no message to answer yet")
        return users[-1]

    def _reply(self, listener: ChatEmit | None, parent: Parent = AT_LEAF) -> Future[ReplyDone]:
        """Stream a reply to the branch ending at ``parent`` (by default the current one's last message)."""
        messages = self.store.conversation(self.chat_id, None if parent is AT_LEAF else parent)
        sampling = self.sampling
        # The reply keeps the model that writes it: the one loaded now, whatever the chat's row says.
        saver = StreamingSaver(self.store, self.chat_id, model=self.session.model_path or "",
                               adapter=self.session.lora_path or "", parent=parent)

        def on_event(event: ChatEvent) -> None:
            saver.on_event(event)
            if listener is not None:
                listener(event)

        out: Future[ReplyDone] = Future()
        inner = self.session.reply(messages, sampling, on_event)

        def saved(done: Future[ReplyDone]) -> None:
            # Runs on the session's worker thread when the reply ends; `out` resolves after the final save.
            try:
                exc = done.exception()
                if exc is not None:
                    self._close_saver(saver, None, None, complete=False)
                    out.set_exception(exc)
                    return
                reply = done.result()
                self._close_saver(saver, reply.text, reply.stats.to_json(),
                                  complete=reply.stats.finish_reason != "cancelled")
                out.set_result(reply)
            except BaseException as exc:  # a failed save must still resolve the caller's future
                if not out.done():
                    out.set_exception(exc)

        inner.add_done_callback(saved)
        return out

    def _close_saver(self, saver: StreamingSaver, text: str | None, stats: dict[str, Any] | None,
                     complete: bool) -> None:
        final = saver.text if text is None else text
        if not final and not complete:
            # Nothing came (failed, or stopped before the first token): no empty bubble in the chat.
            self.store.delete_message(saver.message.id)
        else:
            saver.finish(final, stats=stats, complete=complete)
