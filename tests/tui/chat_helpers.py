"""Shared set-up for the Chat pane tests: an app at 80x24 with a small context, and waits that never hang."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from textual.pilot import Pilot

from tests.tui.app_helpers import make_app, until
from tuillm.core.chat.store import default_path
from tuillm.core.llama.options import Sampling
from tuillm.core.settings import Config
from tuillm.tui.app import TuillmApp

SIZE = (80, 24)
# Short greedy replies keep the tests quick on two cores.
SHORT = Sampling(temperature=0.0, max_tokens=12)


def chat_app(tmp_path: Path, *, ctx: int = 512, **kwargs) -> TuillmApp:
    return make_app([tmp_path], config=Config(default_ctx=ctx, model_dirs=[tmp_path]), **kwargs)


def chat_pane(app: TuillmApp):
    return app.query_one("#pane-chat")


async def wait_idle(pilot: Pilot) -> None:
    """Until no model is loading and no reply is streaming (and the turn's end has been drawn)."""
    pane = chat_pane(pilot.app)
    await until(pilot, lambda: not pane.model_loading and not pane.busy, "the chat pane going idle")
    await pilot.pause()


def record_notifications(app: TuillmApp) -> list[str]:
    """Every notification's text from now on (a toast may expire before a slow step ends)."""
    seen: list[str] = []
    notify = app.notify

    def recording(message: str, **kwargs) -> None:
        seen.append(f"{kwargs.get('title', '')}: {message}")
        notify(message, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return seen


async def send(pilot: Pilot, text: str) -> None:
    """Type ``text`` in the prompt (which has the focus) and press Enter."""
    prompt = pilot.app.query_one("#chat-prompt")
    prompt.focus()
    prompt.text = text
    await pilot.press("enter")


def saved_reply() -> str:
    """The assistant text saved so far (read with plain sqlite3, as another process would)."""
    if not default_path().exists():
        return ""
    db = sqlite3.connect(default_path())
    try:
        row = db.execute("SELECT content FROM messages WHERE role = 'assistant'").fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        row = None
    finally:
        db.close()
    return row[0] if row else ""
