"""A long stored chat with a realistic mix of messages (paragraphs, lists, fenced code), for the long-chat tests and
``tests/bench/chat_history.py``."""

from __future__ import annotations

from tuillm.core.chat.store import ChatStore

_REPLIES = (
    "Sure. A list comprehension builds the list in one expression, which reads well when the body is short:\n\n"
    "```python\nsquares = [n * n for n in range(10) if n % 2 == 0]\nprint(squares)\n```\n\n"
    "For anything longer a plain loop is clearer.",
    "There are three things to check:\n\n1. the file exists and is readable;\n2. the encoding is UTF-8;\n"
    "3. the lines end with `\\n`.\n\nIf all three hold, the parser should accept it.",
    "Here is a shell version:\n\n```bash\nfor f in *.log; do\n  grep -c ERROR \"$f\"\ndone | sort -n | tail -3\n```"
    "\n\nIt counts the errors per file and shows the three worst.",
    "The difference is mostly about ownership. **Borrowing** lets a function read a value without taking it, and "
    "the compiler checks that the borrow ends before the owner changes it. In practice you pass `&value` and the "
    "function signature says `&T`.",
)
_QUESTIONS = (
    "How do I write a list comprehension?",
    "Why does my CSV parser fail on this file?",
    "Count the errors in my log files.",
    "What is borrowing in Rust, in two sentences?",
)


def seed_long_chat(store: ChatStore, count: int, title: str = "Long chat") -> int:
    """A chat of ``count`` messages, questions and answers in turn; its id. Message ``i`` (from 0) starts with
    ``#i`` so a test can tell which one it sees."""
    chat = store.create_chat(title)
    # One transaction: the store commits (and syncs to disk) each message, 12 s for a thousand on these machines.
    # The store has no batch API (the app never needs one), so the test data goes through its connection.
    store._db.execute("BEGIN")
    try:
        for i in range(count):
            role, texts = ("user", _QUESTIONS) if i % 2 == 0 else ("assistant", _REPLIES)
            store.add_message(chat.id, role, f"#{i} {texts[(i // 2) % len(texts)]}")
    finally:
        store._db.execute("COMMIT")
    return chat.id
