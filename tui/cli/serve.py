"""``tuillm serve [MODEL...]``: the models behind an OpenAI- and Ollama-compatible API on a local port."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING

from tuillm.core.llama.options import LOAD_OPTIONS
from tuillm.core.text import safe_line, shown
from tuillm.tui.cli.options import add_config_option, add_options, option_values, read_config
from tuillm.tui.cli.signals import Stopped, handled, leave_gone_terminal

if TYPE_CHECKING:
    from tuillm.core.serve.guard import RequestRecord

EPILOG = """\
clients:
  openai:  OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="KEY or anything")
  curl:    curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
             -d '{"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}'
  ollama:  OLLAMA_HOST=http://127.0.0.1:8080 ollama run demo   (oterm, Open WebUI: the same address)
"""


def _serve_options() -> tuple:
    from tuillm.core.serve.server import SERVE_OPTIONS  # light: declarations, no uvicorn until a server starts

    return SERVE_OPTIONS


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve models over an OpenAI- and Ollama-compatible HTTP API",
        description="Serve models to other tools: OpenAI's API under /v1 (chat completions, completions, "
        "embeddings, models), Ollama's under /api (chat, generate, embed, tags, show, ps) and llama.cpp server's "
        "/health, /tokenize and /detokenize. MODEL is a GGUF path, a name from `tuillm "
        "models` or demo; with none, every GGUF model `tuillm models` lists is served. A model is loaded on its "
        "first request and swapped for another when one is asked for.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", metavar="MODEL", nargs="*", help="models to serve (default: all discovered)")
    sections = add_options(p, _serve_options())
    server = sections["server"]
    server.add_argument("--cors", metavar="ORIGIN", action="append", default=[],
                        help="allow browser pages from ORIGIN to call the API (repeatable; default: none)")
    # The chat's loading flags, over the settings file's [load] and each model's own settings.
    add_options(p, LOAD_OPTIONS, defaults=False, sections=sections)
    sections["loading"].add_argument("--lora", metavar="ADAPTER.gguf", action="append", default=[],
                                     help="also serve a LoRA adapter over the first MODEL, named after its file "
                                          "(repeatable)")
    add_config_option(p)
    return p


_HANGUP = tuple(s for s in (getattr(signal, "SIGHUP", None),) if s is not None)
MAX_PATH_SHOWN = 200  # a request's path is cut there in its log line
MAX_ERROR_SHOWN = 1000  # and its error: one line stays one screen's worth


def _print_request(record: RequestRecord) -> None:
    """One line per request. What came from the client (path, error) is shown escaped (\\x1b, \\u202e), not
    stripped: stripping logged `GET /%1b]0;PWNED%07` as `GET /`."""
    tokens = f" {record.prompt_tokens}+{record.completion_tokens} tokens" if record.completion_tokens or \
        record.prompt_tokens else ""
    model = f" {shown(record.model)}" if record.model else ""
    load = f" (loaded in {record.load_s:.2f}s)" if record.load_s else ""
    error = f" ({shown(record.error, MAX_ERROR_SHOWN)})" if record.error else ""
    print(f"{shown(record.method)} {shown(record.path, MAX_PATH_SHOWN)}{model} {record.status}{tokens} "
          f"{record.seconds:.2f}s{load}{error}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from tuillm.core.serve.models import served_models
    from tuillm.core.serve.server import ServeOptions, Server

    values = option_values(args, _serve_options())
    load = option_values(args, LOAD_OPTIONS, given_only=True)
    api_key = values.pop("api_key") or os.environ.get("TUILLM_API_KEY") or None
    options = ServeOptions(**values, api_key=api_key, cors=list(args.cors), n_ctx=load.pop("n_ctx", None),
                           load=load)
    config = read_config(args)
    models = served_models(args.models, args.lora, config)
    server = Server(models, config, options, log=_print_request)
    names, url = ", ".join(sorted(models)), server.url
    print(safe_line(f"tuillm: serving {names} at {url} (OpenAI: {url}/v1; Ollama: OLLAMA_HOST={url}); "
                    "Ctrl+C stops"), file=sys.stderr, flush=True)
    hangups: list[int] = []

    def hang_up(signum: int, _frame: object) -> None:
        # As SIGTERM (uvicorn's): the requests running get the grace, not a KeyboardInterrupt in the event loop.
        leave_gone_terminal(signum)  # a dropped SSH session: the log lines go nowhere rather than fail
        hangups.append(signum)
        server.stop()

    with handled(_HANGUP, hang_up):
        server.serve()
    if hangups:
        raise Stopped(hangups[0])  # its line and exit code, as for any command
    return 0
