"""How much memory a LoRA run takes: an estimate from the base's shape and the run's settings, without torch.

Model of the training loop in core.train.loop (peak resident memory on CPU; allocated memory on a GPU):
- runtime: the Python process with torch, transformers and peft imported (CPU only: a GPU's figure is its own);
- weights: every parameter of the base in the training dtype (``auto``: bf16 on a GPU and on a CPU with bf16 units,
  else float32: core.train.base.pick_dtype's rule); activations and the LM head's logits are saved in it too (the
  forward runs under autocast; the loss works on float32 slices of the logits, core.train.loss);
- LoRA: its parameters, their gradients and AdamW's two moments, all float32 (16 bytes a parameter);
- activations of one forward/backward pass: per token and layer a multiple of the hidden and MLP widths (plus the
  inputs LoRA dropout copies), a layer's attention scores at once, and the LM head's logits and their gradient for
  the trained tokens (the loop keeps only those). One pass holds a row (core.train.passes.row_limit): on CPU/MPS at
  most ``max_len`` tokens (at least 512 where attention runs example by example), the whole micro-batch
  (``batch_size x max_len``) on CUDA or with ``packing="row"``. Attention example by example (core.train.attention,
  most models) holds one example's scores at a time; a model that keeps transformers' mask, the whole row's.
Gradient checkpointing keeps only each layer's input and recomputes one layer at a time.
DPO (``method="dpo"``): a pair's chosen and rejected answers run in one pass (twice the tokens, each attending to
itself); the reference log-probabilities come from the same model with the adapter switched off, under no_grad, so
there is no second copy of the base and nothing of that pass is kept (though the peak stands higher than the
policy pass alone: DPO_REFERENCE_SHARE).
``nproc`` processes on CPU each hold their own copy of everything (runtime, base, LoRA, activations): the total is N
times one process's; on CUDA each GPU holds one process's share and the figure is per GPU. With ``fsdp`` a GPU holds
its 1/N of the base and one layer gathered whole at a time. On CPU the figure stays a whole copy per process: only
rank 0 reads the base (the others receive their shares), but FSDP's gathered buffers (the embeddings, a layer) take
the saving back on small bases (on the demo each rank peaked 2% above a DDP rank: tests/bench/fsdp_memory.py).

The constants were fitted to the peak RSS (VmHWM) of real short runs of the demo (SmolLM2-135M) on CPU;
tests/bench/train_memory.py measures it again and prints the ratio. GPU figures use the same activation model in
bf16 and are not calibrated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuillm.core.train.attention import applies
from tuillm.core.train.options import TrainConfig
from tuillm.core.train.passes import row_limit

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Saved activations per element under 16-bit autocast: the matrix products' inputs in 16 bits, the residual stream,
# the norms and the upcast projection outputs in float32 (core.train.model.float32_outside_linear); fitted on the
# demo in bf16.
AUTOCAST_ACTIVATION_BYTES = 3.4
RUNTIME_CPU = 450 * 2**20  # python + torch + transformers + peft + tokenizer: ~360 MB after imports, then data
RUNTIME_GPU = 0  # what torch reports on a GPU (max_memory_allocated) has no runtime part
# Fitted to the demo's measured activation cost per token (see the module docstring).
ACTIVATION_SCALE = 0.87
# The LM head's logits and their gradient in the run's dtype (bf16 under autocast), with what the allocator keeps
# of cross-entropy's float32 slices (core.train.loss), in copies of the logits (fitted on the demo in bf16 and
# float32: runs with and without gradient checkpointing separate this from the layers' share).
LOGIT_COPIES = 6
# DPO's peak stands above an SFT pass of as many tokens by about this share of the layers' activations (the
# reference pass without gradients just before; fitted on the demo: 2.24 GB measured against 1.85 GB).
DPO_REFERENCE_SHARE = 0.9
ATTENTION_COPIES = 2  # scores and softmax of one layer at a time, for a row holding one example
# A row packing several examples attends through a block-diagonal mask: the attention falls back to a kernel that
# materialises the scores (fitted on a 4 x 512-token row).
MASKED_ATTENTION_COPIES = 10


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a base model."""

    params: int
    n_layers: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    vocab_size: int
    window: int | None = None  # sliding-window attention's span, if the model has one
    softcap: float | None = None  # attention logit soft-capping, if the model has it


@dataclass(frozen=True)
class TrainMemoryEstimate:
    runtime_bytes: int
    weights_bytes: int
    lora_bytes: int
    activation_bytes: int
    lora_params: int
    tokens_per_pass: int
    device: str
    dtype: str
    method: str = "sft"
    processes: int = 1  # --nproc: on CPU the machine holds this many copies of the process

    @property
    def process_bytes(self) -> int:
        """One process's peak (on a GPU: one GPU's)."""
        return self.runtime_bytes + self.weights_bytes + self.lora_bytes + self.activation_bytes

    @property
    def total_bytes(self) -> int:
        """What the machine needs: RAM on CPU (every process), one GPU's memory on CUDA."""
        return self.process_bytes * (1 if self.device == "cuda" else self.processes)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "process_bytes": self.process_bytes, "total_bytes": self.total_bytes}


def model_shape(base: str | Path) -> ModelShape:
    """The shape of an HF folder (config.json + safetensors headers) or a GGUF file (its header)."""
    from tuillm.core.models.metadata import read_info

    base = Path(base)
    info = read_info(base)
    if base.is_dir():
        from tuillm.core.train.base import read_config

        cfg = read_config(base)
        cfg = {**cfg, **(cfg.get("text_config") or {})}
        n_ff = _number(cfg.get("intermediate_size"))
        window = _number(cfg.get("sliding_window")) if cfg.get("use_sliding_window", True) else 0
        softcap = cfg.get("attn_logit_softcapping")
    else:
        from tuillm.convert.gguf_header import read_gguf_header

        fields = read_gguf_header(base).fields
        n_ff = _number(fields.get(f"{info.arch}.feed_forward_length"))
        window = _number(fields.get(f"{info.arch}.attention.sliding_window"))
        softcap = fields.get(f"{info.arch}.attn_logit_softcapping")
    head_dim = info.head_dim_k or (info.n_embd // info.n_head if info.n_head else 0)
    return ModelShape(params=info.params, n_layers=info.n_layers, n_embd=info.n_embd,
                      n_ff=n_ff or 4 * info.n_embd, n_head=info.n_head, n_head_kv=info.n_head_kv or info.n_head,
                      head_dim=head_dim, vocab_size=info.vocab_size, window=window or None,
                      softcap=float(softcap) if isinstance(softcap, int | float) and softcap else None)


def _number(value: object) -> int:
    """A count from a config or GGUF field (a per-layer list: its largest); 0 when absent or not a number."""
    if isinstance(value, list):
        value = max((v for v in value if isinstance(v, int | float)), default=0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _target_sizes(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each LoRA target of one layer."""
    q, kv = shape.n_head * shape.head_dim, shape.n_head_kv * shape.head_dim
    e, f = shape.n_embd, shape.n_ff
    return {"q_proj": (e, q), "k_proj": (e, kv), "v_proj": (e, kv), "o_proj": (q, e),
            "gate_proj": (e, f), "up_proj": (e, f), "down_proj": (f, e)}


def _targets(shape: ModelShape, targets: list[str] | str) -> list[tuple[int, int]]:
    sizes = _target_sizes(shape)
    if targets in ("default", "all-linear", None, []):
        names = list(sizes)
    else:
        # Fused projections count as their parts; unknown names (another architecture's) as a q projection.
        names = []
        for t in targets:
            names.extend({"qkv_proj": ["q_proj", "k_proj", "v_proj"],
                          "gate_up_proj": ["gate_proj", "up_proj"]}.get(t, [t]))
    return [sizes.get(n, sizes["q_proj"]) for n in names]


def lora_params(shape: ModelShape, rank: int, targets: list[str] | str = "default") -> int:
    return shape.n_layers * sum(rank * (i + o) for i, o in _targets(shape, targets))


def estimate_training(shape: ModelShape, *, rank: int = TrainConfig.rank,
                      targets: list[str] | str = TrainConfig.targets, max_len: int = TrainConfig.max_len,
                      batch_size: int = TrainConfig.batch_size, dropout: float = TrainConfig.dropout,
                      device: str = "cpu", dtype: str = TrainConfig.dtype, packing: str = TrainConfig.packing,
                      grad_checkpointing: bool = TrainConfig.grad_checkpointing, trained_fraction: float = 1.0,
                      method: str = TrainConfig.method, nproc: int = TrainConfig.nproc,
                      fsdp: bool = TrainConfig.fsdp) -> TrainMemoryEstimate:
    """Peak memory of a run with these settings (the fields of core.train.options.TrainConfig);
    ``trained_fraction``: the share of tokens that carry loss (1 for raw text: the upper bound)."""
    gpu = device.startswith("cuda")
    dtype = auto_dtype(device) if dtype == "auto" else dtype
    width = DTYPE_BYTES.get(dtype, 4)
    act_width = AUTOCAST_ACTIVATION_BYTES if width < 4 else width
    per_example = applies("sdpa", shape.window, shape.softcap, max_len)
    limit = row_limit(packing, max_len, device, per_example)
    micro = max_len * batch_size
    row = micro if limit is None else min(micro, max(limit, max_len))
    sides = 2 if method == "dpo" else 1  # a pair's chosen and rejected answers in the same pass
    # DPO: a pair's chosen and rejected answers in a row of their own, or the whole micro-batch's in one.
    tokens = 2 * (micro if limit is None else max_len) if sides > 1 else row
    n_lora = lora_params(shape, rank, targets)
    sizes = _targets(shape, targets)
    # Saved for backward, per token and layer (in elements): norms and residuals, q/k/v and attention output,
    # the MLP's gate, up, activation and product, the inputs LoRA dropout copies, and LoRA's rank-wide outputs.
    per_layer = (10 * shape.n_embd + 2 * (shape.n_head + 2 * shape.n_head_kv) * shape.head_dim + 4 * shape.n_ff
                 + (sum(i for i, _ in sizes) if dropout > 0 else 0) + rank * len(sizes))
    per_layer_bytes = ACTIVATION_SCALE * per_layer * act_width
    if grad_checkpointing:
        layers = tokens * (shape.n_layers * shape.n_embd * 4 + per_layer_bytes)  # float32 residual stream
    else:
        layers = tokens * shape.n_layers * per_layer_bytes
    if per_example:
        attention = ATTENTION_COPIES * shape.n_head * max_len * max_len * 4
    else:
        copies = MASKED_ATTENTION_COPIES if tokens > max_len or sides > 1 else ATTENTION_COPIES
        attention = copies * shape.n_head * tokens * tokens * 4
    # Rows of a micro-batch run one after another on CPU, yet the allocator keeps about one float32 logit row per
    # token of the other rows (measured: 4 x 512 tokens peak 0.35 GB above 1 x 512).
    rest = micro * sides - tokens
    # The LM head runs on the trained positions only: all of them for raw text, the answers for chat data.
    logits = int(tokens * min(max(trained_fraction, 0.0), 1.0)) * shape.vocab_size * width * LOGIT_COPIES
    logits += rest * shape.vocab_size * 4
    return TrainMemoryEstimate(
        runtime_bytes=RUNTIME_GPU if gpu else RUNTIME_CPU,
        weights_bytes=sharded_bytes(shape, width, nproc) if fsdp and gpu else weights_bytes(shape, width),
        lora_bytes=n_lora * 16,
        activation_bytes=int(layers * (1 + (DPO_REFERENCE_SHARE if sides > 1 else 0)) + attention + logits),
        lora_params=n_lora,
        tokens_per_pass=tokens,
        device="cuda" if gpu else device,
        dtype=dtype,
        method=method,
        processes=max(1, nproc),
    )


def weights_bytes(shape: ModelShape, width: int) -> int:
    """The base in memory: every weight in the run's dtype (in a 16-bit run the norms go back to float32,
    core.train.model.float32_outside_linear: too small to count)."""
    return shape.params * width


def sharded_bytes(shape: ModelShape, width: int, nproc: int) -> int:
    """One GPU's part of an FSDP-sharded base: its 1/N share, and one layer gathered whole for its pass."""
    whole = weights_bytes(shape, width)
    return whole // max(1, nproc) + whole // max(1, shape.n_layers)


def auto_dtype(device: str) -> str:
    """What ``--dtype auto`` gives without importing torch: bf16 on a GPU (the usual case; an old one runs float16,
    the same width) and on a CPU with bf16 units, float32 elsewhere."""
    if device.startswith("cuda") or device == "mps":
        return "bfloat16"
    from tuillm.core.models.hardware import cpu_bf16

    return "bfloat16" if cpu_bf16() else "float32"


def estimate_for_config(shape: ModelShape, config: Any, trained_fraction: float = 1.0) -> TrainMemoryEstimate:
    """The estimate for a ``TrainConfig`` (device "auto" counts as CPU: finding a GPU would import torch)."""
    return estimate_training(shape, rank=config.rank, targets=config.targets, max_len=config.max_len,
                             batch_size=config.batch_size, dropout=config.dropout,
                             device=config.device if config.device != "auto" else "cpu", dtype=config.dtype,
                             packing=config.packing, grad_checkpointing=config.grad_checkpointing,
                             trained_fraction=trained_fraction, method=config.method, nproc=config.nproc,
                             fsdp=config.fsdp)
