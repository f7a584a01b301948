"""What the data and pairs tests share: a character "tokenizer", ChatML, and JSONL written from rows."""

from __future__ import annotations

import json
from pathlib import Path

from tuillm.core.chat.template import CHATML_TEMPLATE, ChatTemplate

CHATML = ChatTemplate(CHATML_TEMPLATE, name="chatml")


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path
