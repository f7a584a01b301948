"""The one fit verdict: will a model fit for the load the chat would do?

``tuillm models``, ``tuillm info``, the catalog and the Models pane all ask ``load_fit``, so they cannot disagree
about the same file: the load is the settings file's [load], then the model's own [model."path"] settings, then
the front end's override of the context (``--ctx``), exactly as ``tuillm chat`` and the Chat pane build it
(``core.settings.load_options_for``). An HF checkpoint is judged as the f16 GGUF it would become.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuillm.core.llama.options import LoadOptions
from tuillm.core.models.memory import MemoryEstimate, estimate_for_load, fit_advice
from tuillm.core.models.metadata import ModelInfo
from tuillm.core.settings import Config, load_options_for


@dataclass(frozen=True)
class Fit:
    """The load options a model would get and their estimate (``estimate.fit``: "fits", "tight", "too big")."""

    options: LoadOptions
    estimate: MemoryEstimate

    @property
    def verdict(self) -> str:
        return self.estimate.fit


def load_fit(info: ModelInfo, config: Config, *, n_ctx: int | None = None, available: int | None = None,
             offload: bool | None = None) -> Fit:
    """The fit of ``info`` for the chat's load; ``available``: RAM to judge against (None: measured now);
    ``offload``: whether llama.cpp offloads to a GPU (None: ask it)."""
    options = load_options_for(config, info.path, n_ctx=n_ctx)
    return Fit(options, estimate_for_load(info, options, available, offload=offload))


def advice(info: ModelInfo, fit: Fit) -> str:
    """The one line of advice for that load, against the same available RAM (core.models.memory.fit_advice)."""
    return fit_advice(info, fit.options, fit.estimate.available_bytes)
