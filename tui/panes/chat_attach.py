"""The Chat pane's attachments, chat import and export (a mixin of ``ChatPane``).

Attachments: when a message is sent, each ``@path`` in it that names a file is read (``core.chat.attachments``:
text only, bounded) and added to the message as a fenced block; a path that cannot be attached is said in one line
and nothing is sent (the text stays in the prompt). The files' token counts are said, counted by the loaded model
(an estimate of four characters a token before it loads), and a message that would leave the reply no room in the
context is held back with a warning that gives the numbers: Enter again sends it as it is.

Import: the palette's "Import chat…" asks for a JSON file (``screens.import_chat``), creates the chat it holds
(``core.chat.importer``) and opens it. Export: "Export chat…" asks for a file name (``screens.export_chat``) and
writes the chat's current branch there, JSON (which imports back) or Markdown, asking before it replaces a file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from textual.app import App, SystemCommand

from tuillm.core.chat.attachments import Attachment, AttachmentError, Fit, attach_mentions, measure
from tuillm.core.chat.backend import ChatBackend, ChatMessage
from tuillm.core.chat.importer import import_chat
from tuillm.core.chat.store import ChatStore
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import Sampling
from tuillm.core.settings import load_options_for
from tuillm.tui.panes.chat_model import DEMO
from tuillm.tui.session import Session


class ChatAttach:
    # What this uses of the pane (ChatPane and its mixins define them); a plain class, as ChatMemory.
    session: Session
    engine: ChatBackend
    store: ChatStore | None
    chat_id: int | None
    model_path: Path | None
    model_loading: bool
    busy: bool
    draft_system: str
    draft_sampling: Sampling
    app: App
    notify: Callable[..., None]
    _model_ready: Callable[[], bool]
    _switch_to: Callable[[int | None], None]
    _sync_view: Callable[[], Awaitable[None]]
    focus_default: Callable[[], None]
    _overflow_warned: str | None = None  # the message last held back for not fitting: Enter again sends it

    async def with_attachments(self, text: str) -> str | None:
        """The message to send for the prompt's ``text``: its ``@path`` files attached; None when nothing is to be
        sent (a file could not be attached, or the message was held back for not fitting)."""
        if self.busy or self.model_loading:
            return text  # the turn is refused as it is; nothing to read
        try:
            message, attachments = await asyncio.to_thread(attach_mentions, text)
        except AttachmentError as exc:
            self.notify(str(exc), title="Attach", severity="error")
            return None
        if not attachments:
            return None if await self._longer_than_the_context(text) else text
        try:
            fit = await asyncio.to_thread(self._measure, message, attachments)
        except TuillmError as exc:  # the model could not count (e.g. a broken template): the turn says it too
            self.notify(f"could not count the attachment's tokens: {exc}", title="Attach", severity="warning")
            return message
        self.notify(f"attached {fit.summary(attachments)}", title="Attach")
        if fit.warning is not None and self._overflow_warned != message:
            self._overflow_warned = message
            self.notify(f"{fit.warning}. Enter again sends it as it is", title="Too long for the context",
                        severity="warning", timeout=15)
            return None
        self._overflow_warned = None
        return message

    async def _longer_than_the_context(self, message: str) -> bool:
        """Whether ``message`` alone is longer than the loaded model's whole context: said, and not sent (sent, it
        was kept in the chat with a failed reply). Counted only when its bytes could be that many tokens."""
        if not self._model_ready() or len(message.encode("utf-8")) < self.engine.n_ctx:  # a token is a byte or more
            return False
        try:
            tokens = await asyncio.to_thread(
                lambda: self.engine.count_tokens([{"role": "user", "content": message}]).result())
        except TuillmError:
            return False  # the turn says what is wrong
        if tokens < self.engine.n_ctx:
            return False
        self.notify(f"the message is {tokens} tokens, longer than the whole context ({self.engine.n_ctx}): shorten "
                    "it, or load the model with a larger context (Models, e)", title="Too long for the context",
                    severity="error", timeout=15)
        return True

    def _measure(self, message: str, attachments: list[Attachment]) -> Fit:
        """On a worker thread: the count comes from the backend's worker (no reply is running: the pane is idle)."""
        history: list[ChatMessage] = []
        sampling = self.draft_sampling
        if self.chat_id is not None and self.store is not None:
            history = self.store.conversation(self.chat_id)
            sampling = self.store.get_chat(self.chat_id).sampling
        elif self.draft_system:
            history = [{"role": "system", "content": self.draft_system}]
        if self._model_ready():
            return measure(history, message, attachments, n_ctx=self.engine.n_ctx, reply_tokens=sampling.max_tokens,
                           count=lambda messages: self.engine.count_tokens(messages).result())
        n_ctx = load_options_for(self.session.config, self.model_path or DEMO).n_ctx
        return measure(history, message, attachments, n_ctx=n_ctx, reply_tokens=sampling.max_tokens)

    # --- import and export ----------------------------------------------------------------------------------------
    def transfer_commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand("Import chat…", "A chat from a JSON file: a tuillm export or an OpenAI messages list",
                            self.action_import_chat)
        yield SystemCommand("Export chat…", "This chat's current branch as JSON (imports back) or Markdown",
                            self.action_export_chat)

    def action_import_chat(self) -> None:
        if self.busy:
            self.notify("a reply is on its way: Esc stops it first", title="Import", severity="warning")
            return
        from tuillm.tui.screens.import_chat import ImportChatScreen  # loaded when first opened

        self.app.push_screen(ImportChatScreen(), self._import_picked)

    async def _import_picked(self, path: Path | None) -> None:
        if path is None or self.store is None:
            return
        try:
            chat = await asyncio.to_thread(import_chat, self.store, path)
        except TuillmError as exc:
            self.notify(str(exc), title="Import", severity="error", timeout=10)
            return
        self._switch_to(chat.id)
        await self._sync_view()
        self.focus_default()
        self.notify(f"imported {chat.title}", title="Import")

    def action_export_chat(self) -> None:
        if self.store is None or self.chat_id is None:
            self.notify("nothing to export yet: this chat has no message", title="Export", severity="warning")
            return
        from tuillm.tui.screens.export_chat import ExportChatScreen  # loaded when first opened

        chat_id = self.chat_id
        self.app.push_screen(ExportChatScreen(), lambda path: self._export_picked(chat_id, path))

    def _export_picked(self, chat_id: int, path: Path | None) -> None:
        if path is None or self.store is None:
            return
        store = self.store
        if path.resolve() in {Path(f"{store.path}{end}").resolve() for end in ("", "-wal", "-shm")}:
            self.notify(f"{path}: that is the chat database itself", title="Export", severity="error", markup=False)
            return
        if not path.exists():
            self._export(store, chat_id, path)
            return
        from tuillm.tui.screens.confirm import ConfirmScreen

        self.app.push_screen(ConfirmScreen(f"Replace {path.name} in {path.parent}?"),
                             lambda yes: self._export(store, chat_id, path) if yes else None)

    def _export(self, store: ChatStore, chat_id: int, path: Path) -> None:
        try:
            written = store.export(chat_id, path)  # a temporary name, renamed: a failure leaves the old file
        except TuillmError as exc:
            self.notify(str(exc), title="Export", severity="error", timeout=10, markup=False)
            return
        self.notify(f"exported to {written}", title="Export", markup=False)
