"""``tuillm import-chat FILE.json``: a chat exported by tuillm, or a plain OpenAI ``messages`` list, as a new chat."""

from __future__ import annotations

import argparse
import json

from tuillm.core.text import safe_line


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "import-chat", help="import a chat from a JSON file (a tuillm export or an OpenAI messages list)",
        description="Create a new chat from FILE: a chat exported by tuillm as JSON, an object with an OpenAI "
        '"messages" list, or the list itself ([{"role": ..., "content": ...}]). Roles are system, user and '
        "assistant; content is text or a list of text parts. The chat opens in the TUI's chat list.")
    p.add_argument("file", metavar="FILE.json", help="the chat to import")
    p.add_argument("--json", action="store_true", help="print the new chat as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from tuillm.core.chat.importer import import_chat
    from tuillm.core.chat.store import ChatStore

    with ChatStore() as store:
        chat = import_chat(store, args.file)
        count = len(store.messages(chat.id))
    if args.json:
        print(json.dumps({"id": chat.id, "title": chat.title, "messages": count}, ensure_ascii=True))
    else:
        print(f"imported chat {chat.id}: {safe_line(chat.title)} ({count} message{'' if count == 1 else 's'})")
    return 0
