"""Ollama's keep_alive read as Go's durations are (what Ollama parses it with), or refused with one line."""

from __future__ import annotations

import math

import pytest

from tuillm.core.errors import TuillmError
from tuillm.core.serve.ollama import keep_alive_s


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (0, 0.0), (300, 300.0), (2.5, 2.5), ("0", 0.0), ("300", 300.0), ("30s", 30.0), ("5m", 300.0),
    ("1h30m", 5400.0), ("1.5h", 5400.0), ("300ms", 0.3), (".5s", 0.5), ("+10s", 10.0), (" 5m ", 300.0),
    ("2h45m30.5s", 9930.5), ("10us", 1e-5), ("10µs", 1e-5),
    (-1, math.inf), ("-1", math.inf), ("-1m", math.inf), (-0.5, math.inf),  # negative: keep the model loaded
])
def test_keep_alive_in_seconds(value: object, seconds: float | None) -> None:
    assert keep_alive_s(value) == (seconds if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize("value", [True, False, "", " ", "-", "+", "m", "5 minutes", "5x", "1.2.3", "5m3",
                                   "m5", "1d", "--5m", float("nan"), float("inf"), 10 ** 400, [1], {"m": 1}])
def test_anything_else_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(TuillmError, match=r"^keep_alive: .* is not a duration \(seconds, or like 30s, 5m, 1h; -1: "
                                          r"keep the model loaded; 0: unload it now\)$"):
        keep_alive_s(value)


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(TuillmError) as err:
        keep_alive_s("9" * 70 + "minutes")
    assert "…" in str(err.value) and len(str(err.value)) < 200
