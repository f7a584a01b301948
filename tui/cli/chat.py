"""``tuillm chat MODEL``: one streamed answer (``--prompt``), or a line REPL that also reads piped stdin."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tuillm.core.errors import TuillmError


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
    g = p.add_argument_group("loading")
    g.add_argument("--ctx", type=int, default=None, help="context size in tokens (default: the configured one)")
    g.add_argument("--n-gpu-layers", "--ngl", type=int, default=None, dest="n_gpu_layers",
                   help="layers to offload to the GPU (-1: all; default: the configured number, else all that "
                   "fit when llama.cpp can offload)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: the configured number, else "
                   "llama.cpp's)")
    g.add_argument("--batch", type=int, default=512, help="prompt batch size (default 512)")
    g.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=None,
                   help="use flash attention (default: the configured one)")
    g.add_argument("--kv-type", choices=("f16", "q8_0", "q4_0"), default=None,
                   help="KV cache type (default: the configured one)")
    g.add_argument("--no-mmap", action="store_true", help="read the model into memory instead of mapping it")
    g.add_argument("--lora", metavar="ADAPTER.gguf", help="apply a LoRA adapter GGUF")
    g.add_argument("--lora-scale", type=float, default=1.0, help="LoRA scale (default 1.0)")
    g.add_argument("--template", metavar="FILE", help="a Jinja chat template to use instead of the model's")
    s = p.add_argument_group("sampling")
    # Defaults: the config file's [sampling] (built in: temperature 0.7, top-p 0.95, top-k 40, min-p 0.05,
    # repeat penalty 1.1, 512 tokens).
    s.add_argument("--temp", type=float, default=None, help="temperature (0: greedy; default: the configured one)")
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--min-p", type=float, default=None)
    s.add_argument("--repeat-penalty", type=float, default=None)
    s.add_argument("--max-tokens", "-n", type=int, default=None, help="reply length limit (default: the "
                   "configured one, 512 built in)")
    s.add_argument("--seed", type=int, default=-1, help="random seed (-1: random)")
    return p


def _template(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TuillmError(f"{path}: cannot read the template ({getattr(exc, 'strerror', None) or exc})") from None


class _Printer:
    """The session's emit: tokens to stdout as they come (unless --json), notices to stderr."""

    def __init__(self, out: TextIO, err: TextIO, stream_tokens: bool) -> None:
        self.out, self.err, self.stream_tokens = out, err, stream_tokens

    def __call__(self, event: Any) -> None:
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

    config = load_config(args.config)
    if args.ctx is not None and args.ctx < 16:
        raise TuillmError(f"--ctx {args.ctx}: the context must be at least 16 tokens")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise TuillmError("--max-tokens must be at least 1")
    path = resolve_model(args.model, config)
    # The config's [load] and the model's own settings, with the flags given on top (None: not given).
    options = load_options_for(
        config, path, n_ctx=args.ctx, n_gpu_layers=args.n_gpu_layers, n_threads=args.threads,
        n_batch=args.batch, flash_attn=args.flash_attn, kv_type=args.kv_type, use_mmap=not args.no_mmap,
        seed=args.seed, lora_path=args.lora, lora_scale=args.lora_scale, chat_template=_template(args.template))
    sampling = sampling_defaults(config, temperature=args.temp, top_p=args.top_p, top_k=args.top_k,
                                 min_p=args.min_p, repeat_penalty=args.repeat_penalty, max_tokens=args.max_tokens)
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


def _turn(chat: Any, text: str, as_json: bool) -> None:
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


def _repl(chat: Any, as_json: bool) -> int:
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
