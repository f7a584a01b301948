"""argparse flags built from core's option declarations (``tuillm.core.options``): one per ``Option``.

A flag's text goes through ``Option.parse``, so ``--lr nan`` or ``--threads -1`` stop at argparse with its usual
one-line error and exit 2, before any work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from tuillm.core.options import Option, OptionError


def _parser_for(option: Option) -> Any:
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not {exc}") from None

    parse.__name__ = option.name  # argparse names the type in some messages
    return parse


def _help(option: Option, with_default: bool) -> str:
    if not with_default or option.default is None or option.kind is bool:
        return option.help
    return f"{option.help} (default {option.format(option.default)})"


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option], *, defaults: bool = True,
                groups: bool = True) -> None:
    """Adds a flag per option. ``defaults=False`` leaves every flag at None when not given (for flags that
    override settings from a file); grouped under ``option.group`` headings when ``groups``."""
    sections: dict[str, Any] = {}
    for option in options:
        target: Any = parser
        if groups and option.group:
            target = sections.get(option.group) or sections.setdefault(option.group,
                                                                      parser.add_argument_group(option.group))
        default = option.default if defaults else None
        if option.kind is bool and option.choices is None:
            target.add_argument(option.cli_flag, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=default, help=_help(option, defaults))
            continue
        kwargs: dict[str, Any] = {"dest": option.name, "default": default, "help": _help(option, defaults),
                                  "type": _parser_for(option)}
        if option.choices is not None:
            kwargs["metavar"] = option.metavar or "{" + ",".join(option.choices) + "}"
        elif option.metavar:
            kwargs["metavar"] = option.metavar
        target.add_argument(option.cli_flag, **kwargs)


def option_values(args: argparse.Namespace, options: Iterable[Option], *, given_only: bool = False) -> dict[str, Any]:
    """The options' values from parsed ``args``; ``given_only``: only those not None (flags that were given)."""
    values = {o.name: getattr(args, o.name) for o in options}
    if given_only:
        values = {k: v for k, v in values.items() if v is not None}
    return values
