"""``tuillm chat MODEL``: one streamed answer (``--prompt``), or a line REPL that also reads piped stdin."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LOAD_OPTIONS, LORA_SCALE, SAMPLING_OPTIONS, SEED
from tuillm.tui.cli.options import add_options, option_values

if TYPE_CHECKING:  # the engine's modules load only when a chat runs: --help stays instant
    from tuillm.core.chat.conversation import Conversation
    from tuillm.core.chat.events import ChatEvent


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "chat", help="chat with a model headless (one prompt, or a line REPL)",
        description="Stream an answer to stdout. Without --prompt, read one message per line from stdin (a REPL "
        "on a terminal; piped input works too) and keep the conversation. MODEL is a GGUF path, the name of a "
        "discovered model, or `demo`.")
    p.add_argument("model", metavar="MODEL", help="GGUF path, model name from `tuillm models`, or demo")
    p.add_argument("--prompt", "-p", help="the message to answer; without it, read messages from stdin")
    p.add_argument("--system", "-s", default="", help="system prompt")
    p.add_argument("--json", action="store_true", help="print the answer and its stats as JSON (one per line)")
    p.add_argument("--save", action="store_true", help="keep the conversation in the chat database")
    # Every declared flag defaults to None ("not given"): the settings file's [load], the model's own settings
    # and [sampling] apply unless a flag says otherwise (core.settings.load_options_for / sampling_defaults).
    sections = add_options(p, LOAD_OPTIONS, defaults=False)
    loading = sections["loading"]
    loading.add_argument("--no-mmap", action="store_true", help="read the model into memory instead of mapping it")
    loading.add_argument("--lora", metavar="ADAPTER.gguf", help="apply a LoRA adapter GGUF")
    add_options(p, (LORA_SCALE, *SAMPLING_OPTIONS, SEED), defaults=False, sections=sections)
    loading.add_argument("--template", metavar="FILE", help="a Jinja chat template to use instead of the model's")
    return p


def _template(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or exc
        raise TuillmError(f"{path}: cannot read the template ({reason})") from None


class _Printer:
    """The session's emit: tokens to stdout as they come (unless --json), notices to stderr."""

    def __init__(self, out: TextIO, err: TextIO, stream_tokens: bool) -> None:
        self.out, self.err, self.stream_tokens = out, err, stream_tokens

    def __call__(self, event: ChatEvent) -> None:
        from tuillm.core.chat.events import ContextTrimmed, Token
        from tuillm.core.events import Log

        if isinstance(event, Token):
            if self.stream_tokens and event.text:
                self.out.write(event.text)
                self.out.flush()
        elif isinstance(event, ContextTrimmed):
            self.err.write(f"tuillm: {event.message}\n")
        elif isinstance(event, Log) and event.level != "info":
            self.err.write(f"tuillm: {event.level}: {event.message}\n")


def run(args: argparse.Namespace) -> int:
    from tuillm.core.chat.conversation import Conversation
    from tuillm.core.chat.engine import ChatSession
    from tuillm.core.chat.store import ChatStore
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.settings import load_config, load_options_for, sampling_defaults

    # Every flag is checked before the config or the model is read: a bad one is one line, and no work starts.
    load_flags = option_values(args, (*LOAD_OPTIONS, LORA_SCALE, SEED), given_only=True)
    sampling_flags = option_values(args, SAMPLING_OPTIONS, given_only=True)
    config = load_config(args.config)
    path = resolve_model(args.model, config)
    # The config's [load] and the model's own settings, with the flags given on top.
    options = load_options_for(config, path, **load_flags, use_mmap=not args.no_mmap, lora_path=args.lora,
                               chat_template=_template(args.template))
    sampling = sampling_defaults(config, **sampling_flags)
    # Without --save the conversation lives in an in-memory database: one code path either way. The file is
    # opened before the model loads, so a bad database fails fast.
    store = ChatStore() if args.save else ChatStore(":memory:")
    session = ChatSession(_Printer(sys.stdout, sys.stderr, stream_tokens=not args.json))
    try:
        session.load(path, options).result()
        chat = Conversation.new(session, store, model=str(path), system_prompt=args.system, sampling=sampling)
        if args.prompt is not None:
            _turn(chat, args.prompt, args.json)
            return 0
        return _repl(chat, args.json)
    finally:
        session.close()
        store.close()


def _turn(chat: Conversation, text: str, as_json: bool) -> None:
    future = chat.send(text)
    try:
        done = future.result()
    except KeyboardInterrupt:  # Ctrl+C during a reply stops the reply, not the program
        chat.session.stop()
        done = future.result()
    if as_json:
        print(json.dumps({"model": chat.chat.model, "prompt": text, "answer": done.text,
                          "stats": done.stats.to_json()}, ensure_ascii=False), flush=True)
    else:
        sys.stdout.write("\n")
        sys.stdout.flush()


def _repl(chat: Conversation, as_json: bool) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"tuillm chat: {Path(chat.chat.model).name}; one message per line, Ctrl+D to quit",
              file=sys.stderr)
    while True:
        if interactive:
            sys.stderr.write(">>> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        try:
            _turn(chat, text, as_json)
        except TuillmError as exc:
            # One bad turn (e.g. a message longer than the context) does not end an interactive session.
            print(f"tuillm: {exc}", file=sys.stderr)
            if not interactive:
                return 1
