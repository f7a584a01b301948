"""``tuillm``: no arguments opens the TUI; a subcommand does the same work headless.

Each subcommand lives in ``tuillm.tui.cli.<name>`` with ``register(subparsers)`` and ``run(args) -> int``;
those modules import only light things at top level so ``--help`` stays instant.

Every command ends in one line and an exit code, never a traceback: an expected error prints ``tuillm: <error>``
(exit 1); Ctrl-C, SIGTERM and SIGHUP stop it with its cleanup done (exit 128 + the signal; ``cli.signals``); anything
else is a bug, caught by the last-resort guard: one line naming the crash log that holds the traceback (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from tuillm.convert.errors import ConvertError
from tuillm.core.errors import TuillmError, crash_report, error_text, first_line
from tuillm.core.text import safe_line
from tuillm.tui.cli.signals import Stopped, output_hung_up, quiet_exit_on_signals, stop_signals_as_interrupts

# Order is the order of ``tuillm --help``.
COMMANDS = ["models", "info", "convert", "quantize", "quants", "chat", "train", "merge", "export_lora", "serve",
            "import_chat", "search", "pull"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # only for --version: ~10 ms at every start

    try:
        return version("tuillm")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        try:
            print(f"tuillm {_version()}", flush=True)  # on stdout, as argparse's own version action prints it
        except OSError:  # a stdout that takes no more (a full disk): nothing said, as argparse's --help
            _drop_stdout()
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose error line quotes the values given (``unknown type X``) without the control
    characters they may hold; its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        from tuillm.core.text import safe_line

        super().error(safe_line(message))


def build_parser() -> argparse.ArgumentParser:
    from tuillm.tui.cli.options import CONFIG_HELP

    parser = _Parser(
        prog="tuillm",
        description="Local LLMs in the terminal: chat, models, GGUF conversion and LoRA training over llama.cpp. "
        "With no command, opens the full-screen app.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"tuillm.tui.cli.{name}")
        command = module.register(sub)
        command.set_defaults(_run=module.run)
    return parser


def _say(line: str) -> None:
    """One line on stderr (a file name holding a newline does not make it two); a terminal that is gone (SIGHUP, a
    closed pipe) is no reason for a traceback."""
    try:
        print(f"tuillm: {safe_line(line)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _open_closed_std_streams() -> None:
    """A standard stream the caller closed (``<&-``, ``>&-``, ``2>&-``) reads and writes as /dev/null. Python leaves
    it None, and the first read or write was a crash; the descriptor is taken too, so the next file opened cannot
    get it (llama.cpp's lines to fd 2 would go into an output file)."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:  # in order: os.open takes the lowest free descriptor, the closed one
            setattr(sys, name, open(os.open(os.devnull, os.O_RDWR), mode, encoding="utf-8"))


def entry() -> NoReturn:
    """The ``tuillm`` command: ``main``, then an interpreter shutdown that a late Ctrl-C cannot turn into a
    traceback (``main`` itself is also called in-process, by tests)."""
    try:
        code = main()
    finally:
        quiet_exit_on_signals()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _open_closed_std_streams()
    if os.environ.get("HF_ENDPOINT"):  # (the hub client's import is not free: only when there is one to check)
        from tuillm.core.models.hub.client import set_aside_bad_endpoint

        set_aside_bad_endpoint()  # before anything imports huggingface_hub, which fails on a bad one
    if not argv:  # the app: the subcommands' parser (their option declarations import the catalog) is not needed
        return _guarded(_open_app)
    args = build_parser().parse_args(argv)
    if args.command is None:
        return _guarded(lambda: _open_app(args.config))
    return _guarded(lambda: _run_command(args))


def _open_app(config_path: str | None = None) -> int:
    from tuillm.tui.first_frame import first_frame

    # A frame at once, then the imports (most of a second); a stop signal meanwhile ends the start like Ctrl-C,
    # with the terminal restored (the app's own handling begins with the app).
    with stop_signals_as_interrupts(), first_frame():
        from tuillm.tui.app import run_app

        return run_app(config_path=config_path)


def _run_command(args: argparse.Namespace) -> int:
    with stop_signals_as_interrupts():
        return int(args._run(args) or 0)


def _guarded(run: Callable[[], int]) -> int:
    """``run``'s exit code; any error as one line and its exit code, never a traceback."""
    try:
        code = run()
        sys.stdout.flush()  # here, so a full disk's error on the last lines is the guard's, not Python's at exit
        return code
    except Stopped as exc:
        _say(exc.line)
        return exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:  # `tuillm models | head`
        _drop_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last-resort guard included: one line, never a traceback
        if output_hung_up():
            # The terminal hung up before its SIGHUP came: what failed failed for that (a write's EIO, the
            # quantizer child's), the cleanup has run, and nobody is there to read a line. Not a bug.
            return Stopped(signal.SIGHUP).exit_code
        return _report(exc)


def _drop_stdout() -> None:
    """What stdout still buffers goes nowhere: it would fail again at exit (Python's "Exception ignored", exit 120)."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _report(exc: Exception) -> int:
    if isinstance(exc, TuillmError):
        _say(error_text(exc))
        return 1
    if isinstance(exc, ConvertError):  # the core turns these into TuillmError; one that slips through is expected
        _say(first_line(exc))
        return 1
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # stdout on a full disk: no bug (the
        # writers of files say which one is full themselves)
        _say("no space left on device: the output is incomplete")
        _drop_stdout()
        return 1
    _say(crash_report(exc))  # a bug: the crash log holds its traceback
    return 2
