"""A run's model: the base loaded with LoRA around its targets (float32 LoRA weights), and the names it wraps.

torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit, Log, Progress
from tuillm.core.train.options import DEFAULT_TARGETS, TrainConfig


def resolve_targets(model: Any, targets: list[str] | str) -> list[str] | str:
    """The module names LoRA wraps; an error naming what exists when none of the asked ones does."""
    import torch

    linear = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
    linear.discard("lm_head")
    if targets == "all-linear":
        return "all-linear"
    wanted = list(DEFAULT_TARGETS) if targets in ("default", None, []) else list(targets)
    found = [t for t in wanted if t in linear]
    if not found:
        raise TuillmError(f"no LoRA target module among {', '.join(wanted)}; this model's linear layers: "
                          f"{', '.join(sorted(linear))}")
    return found


def lora_model(config: TrainConfig, folder: Path, device: str, dtype: str, emit: Emit) -> Any:
    """The base loaded on ``device`` with LoRA around its targets (float32 LoRA weights)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuillm.core.train.base import load_model

    torch.manual_seed(config.seed)
    emit(Progress("load", 0, 0, f"loading {folder.name} on {device} ({dtype})"))
    model = load_model(folder, device, dtype)
    targets = resolve_targets(model, config.targets)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    for p in model.parameters():  # LoRA weights in float32 even over a bf16 base: small, and stable to train
        if p.requires_grad:
            p.data = p.data.float()
    if config.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    target_names = targets if isinstance(targets, str) else ", ".join(targets)
    emit(Log(f"LoRA rank {config.rank}, alpha {config.alpha:g} on {target_names}: "
             f"{n_trainable / 1e6:.2f}M trainable of {n_total / 1e6:.0f}M parameters; {device}, {dtype}"))
    return model
