"""The training options, declared once: TrainConfig's defaults are the declaration's and its check is the
declaration's (non-finite and out-of-range values refused in one line); the targets text round-trips."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from tuillm.core.errors import TuillmError
from tuillm.core.train.options import TRAIN_OPTIONS, TrainConfig, format_targets, parse_targets


def config(**kw: object) -> TrainConfig:
    return TrainConfig(base="b", data=["d"], output="o", **kw)  # type: ignore[arg-type]


def test_defaults_are_the_declarations() -> None:
    declared = {o.name: o.default for o in TRAIN_OPTIONS}
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name in declared}
    assert defaults == declared
    # Every field a user sets is declared; the rest are the run's paths and AdamW's decay (not a user option).
    assert {f.name for f in fields(TrainConfig)} - set(declared) == {"base", "data", "output", "weight_decay"}
    config().check()


@pytest.mark.parametrize(("values", "line"), [
    ({"lr": math.nan}, "LR: must be a number above 0, not nan"),
    ({"epochs": math.nan}, "Epochs: must be a number above 0 and at most 10000, not nan"),
    ({"epochs": 1e308}, "Epochs: must be a number above 0 and at most 10000, not 1e+308"),
    ({"alpha": math.inf}, "Alpha: must be a number above 0, not inf"),
    ({"device": "banana"}, "Device: must be one of auto, cpu, cuda, mps, not 'banana'"),
    ({"rank": 0}, "Rank: must be a whole number from 1 to 65536, not 0"),
    ({"eval_fraction": 1.0}, "Eval split: must be a number at least 0 and below 1, not 1.0"),
    ({"max_steps": 0}, "Max steps: must be a whole number from 1 to 100000000, not 0"),
    ({"warmup": 1e308}, "Warmup: must be a number from 0 to 100000000, not 1e+308"),
    ({"max_steps": 10**21}, "Max steps: must be a whole number from 1 to 100000000, not 1000000000000000000000"),
    ({"targets": []}, "Targets: must be module names (comma-separated), all-linear or default, not ''"),
])
def test_bad_values_are_refused_in_one_line(values: dict, line: str) -> None:
    with pytest.raises(TuillmError) as refused:
        config(**values).check()
    assert str(refused.value) == line


def test_every_problem_is_listed() -> None:
    with pytest.raises(TuillmError) as refused:
        config(rank=0, lr=-1.0).check()
    assert str(refused.value) == ("Rank: must be a whole number from 1 to 65536, not 0; "
                                  "LR: must be a number above 0, not -1.0")


def test_targets_text_round_trips() -> None:
    assert parse_targets("") == "default" and parse_targets(" all-linear ") == "all-linear"
    assert parse_targets("q_proj, v_proj,") == ["q_proj", "v_proj"]
    assert format_targets(["q_proj", "v_proj"]) == "q_proj,v_proj"
    assert parse_targets(format_targets(["q_proj", "v_proj"])) == ["q_proj", "v_proj"]


def test_train_on_prompt_is_the_loss_rule() -> None:
    assert config().assistant_only and not config(train_on_prompt=True).assistant_only
    assert config(train_on_prompt=True).fingerprint()["assistant_only"] is False
