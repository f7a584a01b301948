"""argparse flags built from core's option declarations (``tuillm.core.options``): one per ``Option``.

A flag's text goes through ``Option.parse`` once, as argparse reads it. A text the option does not take is kept
as a ``BadFlag`` and refused by ``option_values`` with ``OptionError`` (a ``TuillmError``): the command's usual
one line on stderr and exit 1 (``tuillm: --temp: must be a number from 0 to 5, not 'nan'``), rather than
argparse's usage text and exit 2, and before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuillm.core.options import Option, OptionError
from tuillm.core.text import safe_line

if TYPE_CHECKING:
    from tuillm.core.settings import Config


@dataclass(frozen=True)
class BadFlag:
    """A flag's text that its option refused; ``option_values`` raises ``error``."""

    error: str


def _parser_for(option: Option) -> Any:
    def parse(text: str) -> Any:
        try:
            return option.parse_field(text, option.cli_flag)
        except OptionError as exc:
            return BadFlag(str(exc))

    parse.__name__ = option.name  # argparse names the type in some messages
    return parse


def _help(option: Option, with_default: bool) -> str:
    if not with_default or option.default is None or option.kind is bool:
        return option.help
    if isinstance(option.default, str) and option.default in option.help:  # "… or default (…)": named already
        return option.help
    return f"{option.help} (default {option.format(option.default)})"


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option], *, defaults: bool = True,
                groups: bool = True, sections: dict[str, Any] | None = None) -> dict[str, Any]:
    """Adds a flag per option (its ``cli_flag`` and ``aliases``). ``defaults=False`` leaves every flag at None
    when not given (for flags that override settings from a file); grouped under ``option.group`` headings when
    ``groups``. Returns the argument groups by heading (pass them back as ``sections`` to add more to them)."""
    sections = {} if sections is None else sections
    for option in options:
        target: Any = parser
        if groups and option.group:
            target = sections.get(option.group) or sections.setdefault(option.group,
                                                                      parser.add_argument_group(option.group))
        default = option.default if defaults else None
        flags = (option.cli_flag, *option.aliases)
        if option.kind is bool and option.choices is None:
            target.add_argument(*flags, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=default, help=_help(option, defaults))
            continue
        kwargs: dict[str, Any] = {"dest": option.name, "default": default, "help": _help(option, defaults),
                                  "type": _parser_for(option)}
        if option.choices is not None:
            kwargs["metavar"] = option.metavar or "{" + ",".join(option.choices) + "}"
        else:  # named after the flag the user types (--ctx CTX), not the attribute (n_ctx)
            kwargs["metavar"] = option.metavar or option.cli_flag.lstrip("-").replace("-", "_").upper()
        target.add_argument(*flags, **kwargs)
    return sections


def option_values(args: argparse.Namespace, options: Iterable[Option], *, given_only: bool = False) -> dict[str, Any]:
    """The options' values from parsed ``args``; ``given_only``: only those not None (flags that were given).
    The first flag whose text its option refused raises ``OptionError`` with the one line to show."""
    values = {o.name: getattr(args, o.name) for o in options}
    for value in values.values():
        if isinstance(value, BadFlag):
            raise OptionError(value.error)
    if given_only:
        values = {k: v for k, v in values.items() if v is not None}
    return values


CONFIG_HELP = "use this config file instead of the XDG one"


def add_config_option(p: argparse.ArgumentParser) -> None:
    """``--config`` after the command too (``tuillm models --config X`` was a usage error): the value given there,
    or else the one before the command (SUPPRESS leaves that one in place)."""
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)


def read_config(args: argparse.Namespace) -> Config:
    """The settings a command runs with (``--config``, or the XDG file). What is wrong in them is one line on stderr,
    as the app shows it in a notification; the command goes on with the defaults for those keys."""
    from tuillm.core.settings import load_config

    config = load_config(args.config)
    if config.problem:
        print(f"tuillm: {safe_line(config.problem)}", file=sys.stderr)
    return config
