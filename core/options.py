"""Option declarations: each setting's name, type, default, bounds, choices and help, written once.

A group of options (training, loading, sampling) is a tuple of ``Option``s. The front ends are built from it: the
CLI's argparse flags (``tuillm.tui.cli.options``), the settings file's checks and the panes' forms, so a default
or a bound cannot drift between them (mlx-lm's ``CONFIG_DEFAULTS`` is the pattern). Every value from outside —
a flag, a form field, a TOML value — goes through ``Option.check`` (typed values) or ``Option.parse`` (text) once,
where it enters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tuillm.core.errors import TuillmError

MAX_ECHO = 60  # characters of a refused value the refusal repeats

AUTO = "auto"


class OptionError(TuillmError, ValueError):
    """A value an option does not take; the message says what it expects ("a whole number from 1 to 64").

    A ``TuillmError`` too, so a bad value that reaches a command's top level is its one-line error (exit 1)."""


def _num(value: float) -> str:
    # Whole bounds as written (1048576, not 1.04858e+06); others in their shortest exact form.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Option:
    name: str  # attribute and settings key, e.g. "max_len"
    kind: type  # int, float, str or bool
    default: Any
    help: str
    lo: float | None = None  # smallest value taken (inclusive unless lo_open)
    hi: float | None = None  # largest value taken (inclusive unless hi_open)
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    auto: bool = False  # also takes "auto" (or None), meaning "let the engine choose"; stored as None
    optional: bool = False  # None ("not set") is a value of its own, e.g. max_steps
    flag: str | None = None  # CLI flag; default "--" + name with dashes
    metavar: str | None = None
    group: str = ""  # heading in --help and in forms
    label: str | None = None  # a form's label; default the name in words
    aliases: tuple[str, ...] = ()  # more CLI flags for it ("--ngl", "-n")
    setting: str | None = None  # its key in the settings file when that differs from the name ("ctx")
    pattern: str | None = None  # a text option's form (a regular expression the whole text must match) ...
    pattern_words: str = ""  # ... and that form in words, for its error
    # The widest whole number a store of the value holds (the settings file: TOML's integers are 64-bit; a context
    # of 2**70, which the declaration takes for the memory estimate to refuse, was saved where strict readers fail).
    bits: int | None = None

    # --- describing -------------------------------------------------------------------------------------------

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def expected(self) -> str:
        """What the option takes, in words, for error messages."""
        if self.choices is not None:
            text = "one of " + ", ".join(self.choices)
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = self.pattern_words or "a non-empty text"
        else:
            noun = "a whole number" if self.kind is int else "a number"
            text = noun + self._range_words()
        if self.auto:
            text = f'"{AUTO}" or {text}'
        return text

    def _range_words(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None and not self.lo_open and not self.hi_open:
            return f" from {_num(lo)} to {_num(hi)}"
        parts = []
        if lo is not None:
            parts.append(f"above {_num(lo)}" if self.lo_open else f"at least {_num(lo)}")
        if hi is not None:
            parts.append(f"below {_num(hi)}" if self.hi_open else f"at most {_num(hi)}")
        return (" " + " and ".join(parts)) if parts else ""

    # --- checking ---------------------------------------------------------------------------------------------

    def check(self, value: Any) -> Any:
        """``value`` (already typed, e.g. from TOML) if the option takes it, else ``OptionError``."""
        if value is None or (self.auto and value == AUTO):
            if self.auto or self.optional:
                return None
            raise OptionError(self.expected())
        if self.choices is not None:
            if not isinstance(value, str) or value not in self.choices:
                raise OptionError(self.expected())
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise OptionError(self.expected())
            return value
        if self.kind is str:
            if not isinstance(value, str) or not value.strip():
                raise OptionError(self.expected())
            if self.pattern is not None and re.fullmatch(self.pattern, value.strip()) is None:
                raise OptionError(self.expected())
            return value.strip()
        return self._check_number(value)

    def _check_number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(self.expected())
        if self.kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise OptionError(self.expected())
                value = int(value)
        elif not math.isfinite(value):
            raise OptionError(self.expected())
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise OptionError(self.expected())
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            raise OptionError(self.expected())
        if self._wide(value):
            raise OptionError(self.expected())
        return self.kind(value)

    def parse(self, text: str) -> Any:
        """The value of a text (a CLI flag, a form field); an empty text is None for auto/optional options."""
        text = text.strip()
        if not text:
            if self.auto or self.optional:
                return None
            raise OptionError(self.expected())
        if self.auto and text.lower() == AUTO:
            return None
        if self.kind is bool:
            lowered = text.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise OptionError(self.expected())
        if self.kind in (int, float) and self.choices is None:
            if not text.isascii():  # int("١٢") is 12: a digit of another script, or a look-alike, is no number typed
                raise OptionError(self.expected())
            try:
                number: Any = int(text) if self.kind is int else float(text)
            except ValueError:
                raise OptionError(self.expected()) from None
            return self.check(number)
        return self.check(text)

    # --- refusing, the same words everywhere --------------------------------------------------------------------

    def refusal(self, where: str, given: Any) -> str:
        """The one line every front end shows for a bad value: ``Top p: must be a number from 0 to 1, not '3'``
        (``where``: a form's label, a flag, a settings key). A long value is cut: a pasted page of digits was echoed
        whole into the notification."""
        words = self.expected() + (f" that fits in {self.bits} bits" if self._wide(given) else "")
        given = repr(given)
        return f"{where}: must be {words}, not {given[:MAX_ECHO] + '…' if len(given) > MAX_ECHO else given}"

    def _wide(self, given: Any) -> bool:
        """Whether ``bits``, not the bounds, refuse ``given`` (a whole number, or its text)."""
        if self.bits is None or self.kind is not int or isinstance(given, bool):
            return False
        if isinstance(given, str):
            text = given.strip()
            if not (text.lstrip("+-").isascii() and text.lstrip("+-").isdigit()):
                return False
            # int() of over 4300 digits raises: a number that long is past any bits by its length
            given = int(text) if len(text) < 1000 else (-1 if text.startswith("-") else 1) << self.bits
        if isinstance(given, float) and given.is_integer():  # TOML's 1e30 for a whole number
            given = int(given)
        limit = 1 << (self.bits - 1)
        if not isinstance(given, int) or -limit <= given < limit:
            return False
        return (self.hi is None or given <= self.hi) and (self.lo is None or given >= self.lo)

    def parse_field(self, text: str, where: str | None = None) -> Any:
        """``parse``, refusing with ``refusal`` (``where``: the option's title unless given)."""
        try:
            return self.parse(text)
        except OptionError:
            raise OptionError(self.refusal(where or self.title, text.strip())) from None

    def check_field(self, value: Any, where: str) -> Any:
        """``check``, refusing with ``refusal``."""
        try:
            return self.check(value)
        except OptionError:
            raise OptionError(self.refusal(where, value)) from None

    def format(self, value: Any) -> str:
        """The text a form shows for ``value`` (the inverse of ``parse``)."""
        if value is None:
            return AUTO if self.auto else ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return _num(value)
        return str(value)


def option_map(options: Iterable[Option]) -> dict[str, Option]:
    return {o.name: o for o in options}


def defaults(options: Iterable[Option]) -> dict[str, Any]:
    return {o.name: o.default for o in options}


def check_all(options: Iterable[Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """The checked values of the options named in ``values``; the first bad one raises ``OptionError`` naming
    the option by its flag (``--lr: must be a number above 0, not 0``)."""
    by_name = option_map(options)
    return {name: by_name[name].check_field(value, by_name[name].cli_flag) for name, value in values.items()}
