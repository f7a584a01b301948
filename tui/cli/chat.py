"""``tuillm chat MODEL``: one streamed answer (``--prompt``), or a line REPL that also reads piped stdin."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import LOAD_OPTIONS, LORA_SCALE, SAMPLING_OPTIONS, SEED
from tuillm.core.text import safe_line, safe_text
from tuillm.tui.cli.options import add_config_option, add_options, option_values, read_config
from tuillm.tui.cli.signals import Stopped

if TYPE_CHECKING:  # the engine's modules load only when a chat runs: --help stays instant
    from tuillm.core.chat.attachments import Attachment
    from tuillm.core.chat.conversation import Conversation
    from tuillm.core.chat.engine import ChatSession
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
    p.add_argument("--attach", "-a", metavar="FILE", action="append", default=[],
                   help="attach a text file to --prompt's message (repeatable; UTF-8 text, at most 1 MiB each)")
    # Every declared flag defaults to None ("not given"): the settings file's [load], the model's own settings
    # and [sampling] apply unless a flag says otherwise (core.settings.load_options_for / sampling_defaults).
    sections = add_options(p, LOAD_OPTIONS, defaults=False)
    loading = sections["loading"]
    loading.add_argument("--no-mmap", action="store_true", help="read the model into memory instead of mapping it")
    loading.add_argument("--lora", metavar="ADAPTER.gguf", help="apply a LoRA adapter GGUF")
    add_options(p, (LORA_SCALE, *SAMPLING_OPTIONS, SEED), defaults=False, sections=sections)
    loading.add_argument("--template", metavar="FILE", help="a Jinja chat template to use instead of the model's")
    add_config_option(p)
    return p


def _template(path: str | None) -> str | None:
    from tuillm.core.chat.template import read_template_file

    return None if path is None else read_template_file(path)


def _utf8(text: str | None, what: str) -> str | None:
    """``text`` from the command line, refused when it is not UTF-8 (Python keeps such bytes as surrogates)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TuillmError(f"{what} is not valid UTF-8") from None
    return text


# JSON leaves C1 control characters (U+0080-U+009F) raw, and a terminal reads some as escape sequences.
_C1 = re.compile("[\x7f-\x9f]")


def _json_line(data: dict[str, object]) -> str:
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False))


class _Printer:
    """The session's emit: tokens to stdout as they come (unless --json), notices to stderr; the model's and
    the file's text without terminal control sequences."""

    def __init__(self, out: TextIO, err: TextIO, stream_tokens: bool) -> None:
        self.out, self.err, self.stream_tokens = out, err, stream_tokens

    def __call__(self, event: ChatEvent) -> None:
        from tuillm.core.chat.events import ContextTrimmed, Token
        from tuillm.core.events import Log

        if isinstance(event, Token):
            if self.stream_tokens and event.text:
                self.out.write(safe_text(event.text))
                self.out.flush()
        elif isinstance(event, ContextTrimmed):
            self.err.write(f"tuillm: {safe_line(event.message)}\n")
        elif isinstance(event, Log) and event.level != "info":
            self.err.write(f"tuillm: {event.level}: {safe_line(event.message)}\n")


def run(args: argparse.Namespace) -> int:
    from tuillm.core.chat.attachments import read_attachment
    from tuillm.core.chat.conversation import Conversation
    from tuillm.core.chat.engine import ChatSession
    from tuillm.core.chat.store import ChatStore
    from tuillm.core.models.catalog import resolve_model
    from tuillm.core.settings import load_options_for, sampling_defaults

    # Every flag is checked before the config or the model is read: a bad one is one line, and no work starts.
    load_flags = option_values(args, (*LOAD_OPTIONS, LORA_SCALE, SEED), given_only=True)
    prompt, system = _utf8(args.prompt, "--prompt"), _utf8(args.system, "--system") or ""
    sampling_flags = option_values(args, SAMPLING_OPTIONS, given_only=True)
    if args.attach and prompt is None:
        raise TuillmError("--attach needs --prompt (the message the files go with)")
    attachments = [read_attachment(path) for path in args.attach]
    config = read_config(args)
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
        chat = Conversation.new(session, store, model=str(path), system_prompt=system, sampling=sampling)
        if prompt is not None:
            prompt = _with_attachments(session, system, prompt, attachments, sampling.max_tokens)
            if _turn(chat, prompt, args.json) == "cancelled":
                raise KeyboardInterrupt  # one Ctrl-C ends a one-shot command: "interrupted", exit 130
            return 0
        return _repl(chat, args.json)
    finally:
        session.close()
        store.close()


def _with_attachments(session: ChatSession, system: str, prompt: str, attachments: list[Attachment],
                      reply_tokens: int) -> str:
    """The prompt with the files attached; their token counts, and a warning when the prompt would not leave room
    for the reply, on stderr."""
    if not attachments:
        return prompt
    from tuillm.core.chat.attachments import measure, with_attachments

    message = with_attachments(prompt, attachments)
    history = [{"role": "system", "content": system}] if system else []
    fit = measure(history, message, attachments, n_ctx=session.n_ctx, reply_tokens=reply_tokens,
                  count=lambda messages: session.count_tokens(messages).result())
    print(f"tuillm: attached {fit.summary(attachments)}", file=sys.stderr)
    if fit.warning:
        print(f"tuillm: warning: {fit.warning}", file=sys.stderr)
    return message


def _turn(chat: Conversation, text: str, as_json: bool) -> str:
    """Answers ``text``; returns how the reply finished ("cancelled" after a Ctrl+C)."""
    future = chat.send(text)
    interrupt: KeyboardInterrupt | None = None
    try:
        done = future.result()
    except KeyboardInterrupt as exc:
        # Ctrl+C stops the reply wherever it is (the template's render, the prompt, the tokens) within a moment;
        # a second one while it stops ends the program at once (main's "interrupted").
        chat.session.stop()
        done = future.result()
        interrupt = exc
    if as_json:
        print(_json_line({"model": chat.chat.model, "prompt": text, "answer": done.text,
                          "stats": done.stats.to_json()}), flush=True)
    else:
        sys.stdout.write("\n")
        sys.stdout.flush()
    if isinstance(interrupt, Stopped):  # SIGTERM or SIGHUP ends the program, at a prompt too ("stopped by ...")
        raise interrupt
    return done.stats.finish_reason


def _repl(chat: Conversation, as_json: bool) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        from tuillm.tui.cli import chat_repl as repl  # commands and multi-line messages, at a terminal only

        print(f"tuillm chat: {safe_line(Path(chat.chat.model).name)}; one message per line, /help for commands, "
              "Ctrl+D to quit", file=sys.stderr)
    number, block = 0, []
    while True:
        if interactive:
            sys.stderr.write("... " if block else ">>> ")
            sys.stderr.flush()
        raw = sys.stdin.buffer.readline()  # bytes: a line that is not UTF-8 is refused, not a traceback
        if not raw:
            if block:  # Ctrl+D inside a """ message: what was typed is not lost without a word
                print(f"tuillm: the message opened with {repl.QUOTES} was not closed: not sent", file=sys.stderr)
            return 0
        number += 1
        try:
            text = _stdin_line(raw, number)
            if block or (interactive and repl.opens_block(text)):
                block.append(text)  # a message of several lines, sent when a line ends with the quotes
                if len(block) == 1 or not repl.closes_block(text):
                    continue
                text, block = repl.block_message(block), []
            elif interactive and text.startswith("/"):
                if text.startswith("//"):
                    text = text[1:]  # a message that starts with "/"
                else:
                    found = repl.command(chat, text, sys.stderr)
                    if found is None:
                        return 0
                    chat = found
                    continue
            elif interactive and text.startswith('"""'):
                text = repl.block_message([text])  # """a one-line block"""
            if not text.strip():
                continue
            if _turn(chat, text, as_json) == "cancelled" and not interactive:
                raise KeyboardInterrupt  # piped input: Ctrl+C ends the run; at a prompt it stops one reply
        except TuillmError as exc:
            # One bad turn (e.g. a message longer than the context) does not end an interactive session.
            print(f"tuillm: {exc}", file=sys.stderr)
            if not interactive:
                return 1


def _stdin_line(raw: bytes, number: int) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise TuillmError(f"stdin line {number} is not valid UTF-8") from None
