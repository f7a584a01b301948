"""core/models/fit.py: the one fit verdict, for the load the chat would do, that every front end shows."""

from __future__ import annotations

from pathlib import Path

from tuillm.core.models.catalog import discover
from tuillm.core.models.fit import advice, load_fit
from tuillm.core.models.memory import estimate_for_load, fit_advice
from tuillm.core.models.metadata import read_info
from tuillm.core.settings import Config, ModelDefaults, load_options_for

GIB = 2**30


def test_the_verdict_is_the_chats_load_with_the_models_own_settings(demo_gguf: Path) -> None:
    info = read_info(demo_gguf)
    config = Config(model_dirs=[], default_ctx=2048, kv_type="q8_0")
    fit = load_fit(info, config, available=4 * GIB, offload=False)
    options = load_options_for(config, demo_gguf)
    assert fit.options == options and fit.estimate == estimate_for_load(info, options, 4 * GIB, offload=False)
    assert fit.verdict == "fits" and fit.estimate.n_ctx == 2048
    assert advice(info, fit) == fit_advice(info, options, 4 * GIB)

    # Its own context, too big for the machine: the catalog (what `tuillm models` prints) says so as well.
    config.set_defaults_for(demo_gguf, ModelDefaults(ctx=1 << 22, n_gpu_layers=0))
    own = load_fit(info, config, available=4 * GIB, offload=False)
    assert own.verdict == "too big" and own.estimate.n_ctx == 1 << 22
    entry = discover(config=config, available=4 * GIB, offload=False, use_cache=False).find("demo")
    assert entry is not None and entry.estimate == own.estimate
    # A --ctx flag is every model's context, over their own.
    assert load_fit(info, config, n_ctx=1024, available=4 * GIB, offload=False).estimate.n_ctx == 1024
