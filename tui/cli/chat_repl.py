"""The commands of `tuillm chat MODEL` at a terminal, as `ollama run`'s: /help, /set, /show, /clear, /bye, and
multi-line messages between triple quotes. Piped input never gets here: a script's line that starts with "/" or
'\"\"\"' is a message as written (tui.cli.chat)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TextIO

from tuillm.core.chat.conversation import Conversation
from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import SAMPLING_OPTIONS, SEED
from tuillm.core.options import Option
from tuillm.core.text import safe_line

HELP, CLEAR, BYE, SET, SHOW = ("/help", "/?"), ("/clear",), ("/bye", "/exit", "/quit"), ("/set",), ("/show",)
QUOTES = '"""'
# What /set parameter takes: the sampling options by name (the flags' declarations check the value), the seed, and
# Ollama's names for two of them.
PARAMETERS: dict[str, Option] = {o.name: o for o in (*SAMPLING_OPTIONS, SEED)}
OLLAMA_NAMES = {"num_predict": "max_tokens", "temp": "temperature"}
COMMANDS_HELP = "\n".join(f"  {', '.join(names):30} {what}" for names, what in (
    (HELP, "list these commands"),
    (("/set parameter NAME VALUE",), f"set a sampling parameter ({', '.join(PARAMETERS)})"),
    (("/set system TEXT",), "set the system prompt of this conversation"),
    (("/show parameters|system|info",), "show the sampling parameters, the system prompt, the model"),
    (CLEAR, "start a new conversation (the model and settings stay)"),
    (BYE, "end the chat (as Ctrl+D)"),
    ((f'{QUOTES}text...{QUOTES}',), "a message of several lines (the last one ends with the quotes)"),
    (("//text",), "send a message that starts with /")))


def command(chat: Conversation, line: str, out: TextIO) -> Conversation | None:
    """Carry out a REPL command line: the conversation to go on with, or None to end the chat. A bad command or
    value is one line on ``out``; the chat goes on."""
    word, _, rest = line.strip().partition(" ")
    word = word.lower()
    if word in BYE:
        return None
    try:
        if word in CLEAR:
            current = chat.chat
            print("tuillm: a new conversation", file=out)
            return Conversation.new(chat.session, chat.store, model=current.model,
                                    system_prompt=current.system_prompt, sampling=current.sampling)
        if word in SET:
            _set(chat, rest.strip(), out)
        elif word in SHOW:
            _show(chat, rest.strip().lower(), out)
        else:
            if word not in HELP:
                print(f"tuillm: unknown command {safe_line(word)[:40]}", file=out)
            print(COMMANDS_HELP, file=out)
    except TuillmError as exc:
        print(f"tuillm: {exc}", file=out)
    return chat


def _set(chat: Conversation, args: str, out: TextIO) -> None:
    what, _, rest = args.partition(" ")
    if what == "system":
        chat.set_system_prompt(rest.strip())
        print("tuillm: system prompt set" if rest.strip() else "tuillm: system prompt cleared", file=out)
        return
    name, _, value = rest.strip().partition(" ")
    if what != "parameter" or not name or not value.strip():
        raise TuillmError("usage: /set parameter NAME VALUE, or /set system TEXT")
    name = OLLAMA_NAMES.get(name.lower(), name.lower())
    option = PARAMETERS.get(name)
    if option is None:
        raise TuillmError(f"no parameter {safe_line(name)[:40]}; known: {', '.join(PARAMETERS)}")
    parsed = option.parse_field(value, name)
    if name == SEED.name and parsed == -1:
        parsed = None  # -1: random, as the flag: the load seed's generator goes on
    chat.set_sampling(dataclasses.replace(chat.sampling, **{name: parsed}))
    print(f"tuillm: {name} = {value.strip()}", file=out)


def _show(chat: Conversation, what: str, out: TextIO) -> None:
    current = chat.chat
    if what == "parameters":
        sampling = dataclasses.asdict(chat.sampling)
        for name in PARAMETERS:
            value = sampling[name]
            print(f"  {name:16} {'random' if name == SEED.name and value is None else value}", file=out)
    elif what == "system":
        print(safe_line(current.system_prompt) if current.system_prompt else "(no system prompt)", file=out)
    elif what == "info":
        print(f"  model    {safe_line(Path(current.model).name)}\n  path     {safe_line(current.model)}\n"
              f"  context  {chat.session.n_ctx} tokens", file=out)
    else:
        raise TuillmError("usage: /show parameters, /show system or /show info")


def opens_block(text: str) -> bool:
    """Whether a line starts a multi-line message that goes on to the next lines."""
    return text.startswith(QUOTES) and not closes_block(text[len(QUOTES):])


def closes_block(text: str) -> bool:
    return text.rstrip().endswith(QUOTES)


def block_message(lines: list[str]) -> str:
    """The message of a multi-line block: its lines without the opening and closing quotes and the empty lines
    they leave at either end (indentation inside is kept)."""
    text = "\n".join(lines)
    text = text[len(QUOTES):] if text.startswith(QUOTES) else text
    text = text.rstrip()
    return (text[:-len(QUOTES)] if text.endswith(QUOTES) else text).strip("\n")
