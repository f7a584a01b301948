"""A run's model: the base loaded with LoRA around its targets (float32 LoRA weights), and the names it wraps.

Mixed precision: the frozen base is loaded in the run's dtype (bf16 halves its memory and runs on a CPU's bf16
units) and the model's forward runs under ``torch.autocast`` in that dtype, so the LoRA products use the same fast
kernels while the LoRA weights, their gradients and AdamW's moments stay float32 (accelerate wraps the forward the
same way for ``mixed_precision``). The loss is taken in float32 (core.train.passes).
QLoRA (``quant="4bit"``, CUDA only): the base in NF4 through bitsandbytes, prepared with peft's
``prepare_model_for_kbit_training``.

torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.events import Emit, Log, Progress
from tuillm.core.text import shown as shown_text
from tuillm.core.train.options import DEFAULT_TARGETS, TrainConfig


def linear_widths(model: Any) -> dict[str, int]:
    """The model's linear layers LoRA may wrap, by name (the output head left out), each with its largest useful
    rank: the narrower side of its widest layer of that name."""
    import torch

    widths: dict[str, int] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and leaf != "lm_head":
            widths[leaf] = max(widths.get(leaf, 0), min(module.in_features, module.out_features))
    return widths


def resolve_targets(model: Any, targets: list[str] | str) -> list[str] | str:
    """The module names LoRA wraps: those of the default list the model has, or every name asked for; an error
    naming what exists when none of the defaults is there or any asked name is not (a typo in "q_proj,v_porj" would
    otherwise train a smaller adapter than asked, silently)."""
    linear = linear_widths(model)
    if targets == "all-linear":
        return "all-linear"
    default = targets in ("default", None, [])
    wanted = list(DEFAULT_TARGETS) if default else list(targets)
    found = [t for t in wanted if t in linear]
    missing = [t for t in wanted if t not in linear]
    if not found or (missing and not default):
        named = ", ".join(shown_text(t, 40) for t in (wanted if not found else missing))
        raise TuillmError(f"no LoRA target module {'among' if not found else 'named'} {named}; this model's linear "
                          f"layers: {', '.join(sorted(linear))}")
    return found


def check_rank(model: Any, targets: list[str] | str, rank: int) -> None:
    """A rank above every target layer's narrower side adds nothing (each layer's update is of full rank already)
    and costs memory all the same: a mistyped ``--rank 100000`` filled 24 GB of RAM before the first step."""
    widths = {leaf: w for leaf, w in linear_widths(model).items() if targets == "all-linear" or leaf in targets}
    widest = max(widths, key=widths.__getitem__, default=None)
    if widest is not None and rank > widths[widest]:
        raise TuillmError(f"--rank {rank}: above the width of every target layer; LoRA on these targets takes a "
                          f"rank of at most {widths[widest]} ({widest})")


def lora_model(config: TrainConfig, folder: Path, device: str, dtype: str, emit: Emit, *, weights: bool = True) -> Any:
    """The base loaded on ``device`` with LoRA around its targets (float32 LoRA weights). ``weights=False`` (an FSDP
    rank but the first): the base's modules without their weights (meta), which rank 0 sends once sharded."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuillm.core.train.attention import use_example_attention
    from tuillm.core.train.base import empty_model, load_model

    if device == "cpu":
        bound_cpu_kernel_caches()
    torch.manual_seed(config.seed)
    shown = f"{dtype}, 4-bit NF4" if config.quant == "4bit" else dtype
    emit(Progress("load", 0, 0, f"loading {folder.name} on {device} ({shown})"))
    # The targets are checked on the modules without their weights (~30 ms): a typo is refused before minutes of
    # loading a large base, against the modules transformers builds (not the checkpoint's key names).
    skeleton = empty_model(folder, dtype)
    targets = resolve_targets(skeleton, config.targets)
    check_rank(skeleton, targets, config.rank)
    # --fsdp: the base stays in RAM until FSDP moves each rank's shard to the GPU (core.train.distributed.shard):
    # a base that does not fit one GPU never goes to one whole.
    model = load_model(folder, "cpu" if config.fsdp else device, dtype, config.quant) if weights else skeleton
    use_example_attention(model, config.max_len)  # a packed row attends example by example (core.train.attention)
    if config.quant == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.grad_checkpointing)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    float32_lora(model, device)
    if config.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if dtype != "float32" and config.quant == "none":
        float32_outside_linear(model)
    autocast_forward(model, device, dtype)
    n_trainable, n_total = model.get_nb_trainable_parameters()  # peft's: a 4-bit weight packs two in a byte
    target_names = targets if isinstance(targets, str) else ", ".join(targets)
    emit(Log(f"LoRA rank {config.rank}, alpha {config.alpha:g} on {target_names}: "
             f"{n_trainable / 1e6:.2f}M trainable of {n_total / 1e6:.0f}M parameters; {device}, {shown}"))
    return model


def float32_lora(model: Any, device: str) -> None:
    """The LoRA weights in float32 on ``device`` even over a bf16 base: small, and stable to train (FSDP leaves them
    whole and where they are). Over a base without weights they are made empty: rank 0 sends its own."""
    import torch

    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if not p.requires_grad:
                continue
            if p.is_meta:  # (a meta tensor's data cannot be replaced by a real one: a new parameter)
                empty = torch.empty(p.shape, device=device, dtype=torch.float32)
                module.register_parameter(name, torch.nn.Parameter(empty))
            else:
                p.data = p.data.float().to(device)


# Entries of oneDNN's primitive cache and of PyTorch's own cache of oneDNN kernels (both 1,024 by default).
KERNEL_CACHE_ENTRIES = 64


def bound_cpu_kernel_caches() -> None:
    """Caps the CPU kernel caches before the run's first bf16 product (both read their size then, once a process).
    Every row length of the packed batches makes kernels of its own, and at 1,024 entries the caches held ~1.4 GB
    more at the end of a 256-example run on the demo (peak RSS 3.2 GB against 1.8 GB); at 64 the steps run as fast
    (tests/bench/train.py shows the whole run's peak). A value the user set is kept."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(KERNEL_CACHE_ENTRIES))


def check_quant(quant: str, device: str) -> None:
    """QLoRA needs CUDA and bitsandbytes: anywhere else one line before anything loads (``device`` may be "auto")."""
    if quant == "none":
        return
    from tuillm.core.train.base import pick_device

    device = pick_device(device)
    if not device.startswith("cuda"):
        raise TuillmError(f"--quant {quant} (QLoRA) needs a CUDA GPU (bitsandbytes' 4-bit kernels); this run is on "
                          f"{device}: train without it (--quant none)")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise TuillmError(f"--quant {quant} (QLoRA) needs bitsandbytes: pip install bitsandbytes")


def autocast_forward(model: Any, device: str, dtype: str) -> None:
    """The model's forward under autocast in ``dtype`` (none for float32): every pass of the run, whoever calls it
    (the loss, eval, DPO's reference, a DDP wrapper), computes in it; backward follows the forward's dtypes."""
    if dtype == "float32":
        return
    import weakref

    import torch

    # The model's own forward held weakly: a bound method kept on the model would make a reference cycle, and the
    # model (the whole base) would outlive its run until a full garbage collection.
    inner = weakref.WeakMethod(model.forward)
    device_type, torch_dtype = device.split(":")[0], getattr(torch, dtype)

    def forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, dtype=torch_dtype):
            return inner()(*args, **kwargs)

    model.forward = forward


def float32_outside_linear(model: Any) -> None:
    """The residual stream in float32, as under autocast over float32 weights: the embeddings' output upcast (their
    weights stay in the run's dtype, so a tied LM head needs no cast of the whole vocabulary on every pass), the
    norms back in float32, and each LoRA-wrapped projection's base output upcast before LoRA's update is added. In
    bf16 a small LoRA update (the first steps' B is tiny) is below the output's rounding step and would be lost:
    measured on the demo, a bf16 sum ended short runs 4-12% above float32's loss. Costs float32 projection
    outputs."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) or (name.endswith(".base_layer")
                                                      and isinstance(module, torch.nn.Linear)):
            module.register_forward_hook(lambda _module, _inputs, output: output.float())
        elif not isinstance(module, torch.nn.Linear):
            for param in module.parameters(recurse=False):
                if not param.requires_grad:
                    param.data = param.data.float()
