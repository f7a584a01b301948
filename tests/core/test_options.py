"""core/options.py: an option's check, parse, format and refusal text, and the group helpers."""

from __future__ import annotations

import math
import re

import pytest

from tuillm.core.errors import TuillmError
from tuillm.core.llama.options import Sampling
from tuillm.core.options import AUTO, Option, OptionError, check_all, defaults, option_map

RATE = Option("lr", float, 2e-4, "learning rate", lo=0.0, lo_open=True, hi=1.0)
RANK = Option("rank", int, 16, "LoRA rank", lo=1, hi=1024)
THREADS = Option("n_threads", int, None, "threads", lo=1, hi=512, auto=True, flag="--threads")
STEPS = Option("max_steps", int, None, "step limit", lo=1, optional=True)
KIND = Option("kind", str, "a", "kind", choices=("a", "b"))
FLAG = Option("flash", bool, False, "flash attention")
NAME = Option("name", str, "x", "a name")


def test_expected_words() -> None:
    assert RANK.expected() == "a whole number from 1 to 1024"
    assert RATE.expected() == "a number above 0 and at most 1"
    assert THREADS.expected() == '"auto" or a whole number from 1 to 512'
    assert STEPS.expected() == "a whole number at least 1"
    assert KIND.expected() == "one of a, b"
    assert FLAG.expected() == "true or false"
    assert NAME.expected() == "a non-empty text"
    # Bounds as written, however large or small: no exponent form for a whole one.
    assert Option("tokens", int, 1, "t", lo=1, hi=1 << 20).expected() == "a whole number from 1 to 1048576"
    assert Option("lr", float, 1e-4, "l", lo=1e-7, hi=0.5).expected() == "a number from 1e-07 to 0.5"


@pytest.mark.parametrize(("option", "value"), [
    (RANK, 0), (RANK, 1025), (RANK, 1.5), (RANK, True), (RANK, "3"), (RANK, None),
    (RATE, 0.0), (RATE, math.nan), (RATE, math.inf), (RATE, -math.inf),
    (KIND, "c"), (KIND, 1), (FLAG, 1), (FLAG, "yes"), (NAME, "  "), (NAME, 3),
])
def test_check_refuses(option: Option, value: object) -> None:
    with pytest.raises(OptionError) as info:
        option.check(value)
    assert str(info.value) == option.expected()


def test_check_takes_and_normalises() -> None:
    assert RANK.check(8) == 8 and RANK.check(8.0) == 8 and isinstance(RANK.check(8.0), int)
    assert RATE.check(1) == 1.0 and isinstance(RATE.check(1), float)
    assert THREADS.check(AUTO) is None and THREADS.check(None) is None and THREADS.check(4) == 4
    assert STEPS.check(None) is None
    assert KIND.check("b") == "b" and FLAG.check(True) is True and NAME.check(" n ") == "n"


def test_parse_and_format_are_inverse() -> None:
    assert RANK.parse(" 32 ") == 32 and RATE.parse("1e-3") == 1e-3
    assert THREADS.parse("auto") is None and THREADS.parse("AUTO") is None and THREADS.parse("") is None
    assert STEPS.parse("") is None and FLAG.parse("on") is True and FLAG.parse("no") is False
    # "١٢" (Arabic-Indic), "１２" (full-width): Python's int() reads them as 12; no one typed 12
    for option, text in ((RANK, "x"), (RANK, ""), (RATE, "nan"), (RATE, "0"), (FLAG, "maybe"), (KIND, "z"),
                         (RANK, "١٢"), (RANK, "１２"), (RATE, "١.٥")):
        with pytest.raises(OptionError):
            option.parse(text)
    for option, value in ((RANK, 32), (RATE, 0.0002), (THREADS, None), (STEPS, None), (FLAG, True), (KIND, "b")):
        assert option.parse(option.format(value)) == value
    assert THREADS.format(None) == "auto" and STEPS.format(None) == "" and RATE.format(0.5) == "0.5"


def test_refusal_names_where_and_what() -> None:
    assert RANK.refusal("--rank", "0") == "--rank: must be a whole number from 1 to 1024, not '0'"
    with pytest.raises(OptionError, match=r"^Rank: must be a whole number from 1 to 1024, not '12x'$"):
        RANK.parse_field(" 12x ")
    with pytest.raises(OptionError, match=r"^train\.rank: must be .*, not 0$"):
        RANK.check_field(0, "train.rank")
    assert RANK.parse_field("4") == 4 and RANK.check_field(4, "x") == 4
    # A pasted page of digits is not echoed whole into a notification or an error line.
    long = RANK.refusal("Rank", "9" * 5000)
    assert long == "Rank: must be a whole number from 1 to 1024, not '" + "9" * 59 + "…" and len(long) < 120
    # A bad value that reaches a command's top level is its one-line error.
    assert issubclass(OptionError, TuillmError) and issubclass(OptionError, ValueError)


def test_names_flags_and_titles() -> None:
    assert THREADS.cli_flag == "--threads" and STEPS.cli_flag == "--max-steps"
    assert STEPS.title == "Max steps" and Option("x", int, 1, "", label="Ex").title == "Ex"


def test_groups() -> None:
    group = (RANK, RATE, THREADS)
    assert list(option_map(group)) == ["rank", "lr", "n_threads"]
    assert defaults(group) == {"rank": 16, "lr": 2e-4, "n_threads": None}
    assert check_all(group, {"rank": 8.0, "n_threads": "auto"}) == {"rank": 8, "n_threads": None}
    with pytest.raises(OptionError, match=r"^--lr: must be a number above 0 and at most 1, not 0$"):
        check_all(group, {"lr": 0})


@pytest.mark.parametrize(("pairs", "needle"), [
    (((-1, 1.0),), "keys must be token ids (0 or more), not -1"),
    ((("7", 1.0),), "keys must be token ids (0 or more), not '7'"),
    (((7, math.nan),), "token 7: the bias must be a number from -100 to 100, not nan"),
    (((7, True),), "token 7: the bias must be a number from -100 to 100, not True"),
    (tuple((i, 1.0) for i in range(1025)), "at most 1024 tokens, not 1025"),
])
def test_logit_bias_bounds(pairs: tuple, needle: str) -> None:
    with pytest.raises(OptionError, match=re.escape(f"logit_bias: {needle}")):
        Sampling(logit_bias=pairs)


def test_a_request_s_own_fields_are_not_kept_with_a_chat() -> None:
    sampling = Sampling(temperature=0.1, logit_bias=((5, -100),), grammar='root ::= "x"', logprobs=2)
    assert not {"logit_bias", "grammar", "logprobs"} & set(sampling.to_json())
    # A stored row that holds them anyway (a database written by hand) does not bring them back.
    assert Sampling.from_json({"temperature": 0.1, "logit_bias": "junk", "grammar": "x", "logprobs": -4}) == Sampling(
        temperature=0.1)
    for bad in (-1, 21, True, 2.0):
        with pytest.raises(OptionError, match="logprobs: the alternatives to each token must be a whole number"):
            Sampling(logprobs=bad)


def test_the_seed_llama_cpp_takes_for_random_is_refused() -> None:
    # llama.cpp draws a random seed for 0xFFFFFFFF: a reply "repeated" with that seed came out different each time.
    assert Sampling(seed=(1 << 32) - 2).seed == (1 << 32) - 2
    with pytest.raises(TuillmError, match="seed"):
        Sampling(seed=(1 << 32) - 1)
