"""How much memory llama.cpp needs to run a model, and what fits.

Model of llama.cpp's allocations (CPU and GPU alike):
- weights: the tensor bytes of the file, per layer, so a partial offload knows what moves to VRAM;
- KV cache: n_ctx (padded to 256) x layers x KV heads x head dims x bytes of the cache type;
- compute buffers for one micro-batch (n_ubatch tokens): the attention scores (n_ctx x n_head per token, f32, and
  their f16 copy on the CPU, unless flash attention tiles them) with a few activations.
The constants are checked by tests/bench/memory_estimate.py against the RSS growth of a real load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tuillm.convert.types import OUTPUT_TYPES
from tuillm.core.llama.options import LOAD_OPTIONS, LoadOptions
from tuillm.core.models.metadata import ModelInfo
from tuillm.core.text import format_bytes

KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
                 "q4_1": 20 / 32, "q4_0": 18 / 32}
# Bits per weight of each GGUF output type (the registry's figure), largest first: the order quant_fits reports.
QUANT_BPW: dict[str, float] = {t.name: t.bpw for t in sorted(OUTPUT_TYPES.values(), key=lambda t: -t.bpw)}
DEFAULT_CTX: int = next(o.default for o in LOAD_OPTIONS if o.name == "n_ctx")
CTX_PAD = 256
# "fits" leaves this share of available memory to everything else; above it up to 100% is "tight".
HEADROOM = 0.85
FITS, TIGHT, TOO_BIG = "fits", "tight", "too big"


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    total_bytes: int
    available_bytes: int
    fit: str  # "fits" | "tight" | "too big"
    n_gpu_layers: int = 0
    vram_bytes: int = 0  # the part of total_bytes that lives on the GPU

    @property
    def ram_bytes(self) -> int:
        return self.total_bytes - self.vram_bytes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def classify(need: int, available: int) -> str:
    if need <= available * HEADROOM:
        return FITS
    if need <= available:
        return TIGHT
    return TOO_BIG


def default_ctx(info: ModelInfo) -> int:
    return min(DEFAULT_CTX, info.context_length) if info.context_length else DEFAULT_CTX


def _padded(n_ctx: int) -> int:
    return -(-n_ctx // CTX_PAD) * CTX_PAD


def kv_bytes(info: ModelInfo, n_ctx: int, kv_type: str = "f16") -> int:
    per_elem = KV_TYPE_BYTES[kv_type]
    head_k = info.head_dim_k or (info.n_embd // max(info.n_head, 1))
    head_v = info.head_dim_v or head_k
    per_token_layer = info.n_head_kv * (head_k + head_v)
    return int(_padded(n_ctx) * info.n_layers * per_token_layer * per_elem)


def compute_bytes(info: ModelInfo, n_ctx: int, n_batch: int = 512, flash_attn: bool = False,
                  reserved: bool = False, embedding: bool = False) -> int:
    """Memory of the compute graph for one micro-batch.

    What a CPU run really touches is the attention peak: the scores (n_ctx x n_head per token, f32) with the
    layer's activations, plus the CPU backend's work buffer where the softmaxed scores are converted to f16 for
    the product with V. llama.cpp also reserves room for the logits of a whole micro-batch, but a chat asks for
    one token's logits, so those pages are never touched on the CPU; a GPU allocates the reservation for real
    (``reserved=True``). Flash attention works on tiles and holds neither the scores nor their f16 copy.
    ``embedding``: an embedding context (``embedding_compute_bytes``).
    """
    if embedding:
        return embedding_compute_bytes(info, n_ctx, flash_attn)
    ubatch = min(n_batch, 512, _padded(n_ctx))
    width = ubatch * info.n_embd * 4
    scores = 0 if flash_attn else ubatch * _padded(n_ctx) * info.n_head * 4
    attention = scores + 20 * width
    output = info.vocab_size * 4  # the last token's logits, kept between calls
    if reserved:
        logits = ubatch * info.vocab_size * 4 + 2 * width
        return int(max(logits, attention) + output)
    return int(attention + scores // 2 + output)


def embedding_compute_bytes(info: ModelInfo, n_ctx: int, flash_attn: bool = False) -> int:
    """Memory of an embedding context's compute (core.llama.embedding): an input is decoded in one micro-batch of
    up to ``n_ctx`` tokens, each of them an output, so llama.cpp computes every token's logits in the graph (its
    peak, unless the attention scores are larger) and copies them to its output buffer, on a CPU as on a GPU.
    Measured on the demo: RSS grew by 818 MiB embedding a 2,039-token input at a context of 2,048 (this gives 768),
    by 1,536 MiB for 4,086 tokens at 4,096 with flash attention (1,536); the chat's estimate has ~80 and ~20."""
    ubatch = _padded(n_ctx)
    logits = ubatch * info.vocab_size * 4
    attention = 0 if flash_attn else ubatch * ubatch * info.n_head * 6  # f32 scores and their f16 copy
    return int(max(logits, attention) + logits)


def weights_bytes(info: ModelInfo, quant: str | None = None) -> int:
    if quant is None:
        return info.size_bytes
    return int(info.params * QUANT_BPW[quant] / 8)


def _split_weights(info: ModelInfo, weights: int, n_gpu_layers: int) -> int:
    """Bytes of weights that an offload of ``n_gpu_layers`` puts on the GPU (llama.cpp offloads the last layers
    first, and the output head once all repeating layers are there)."""
    if n_gpu_layers <= 0:
        return 0
    layers = list(info.layer_bytes) or [weights // max(info.n_layers, 1)] * info.n_layers
    scale = weights / max(info.size_bytes, 1) if info.size_bytes else 1.0
    n = min(n_gpu_layers, len(layers))
    on_gpu = sum(layers[len(layers) - n:])
    if n_gpu_layers > len(layers):
        on_gpu += info.other_bytes // 2  # the output head; the token embedding stays on the CPU
    return int(on_gpu * scale)


def estimate(
    info: ModelInfo,
    n_ctx: int | None = None,
    *,
    quant: str | None = None,
    kv_type: str = "f16",
    n_batch: int = 512,
    flash_attn: bool = False,
    n_gpu_layers: int = 0,
    available: int | None = None,
    vram: int | None = None,
    embedding: bool = False,
) -> MemoryEstimate:
    """Memory to run ``info`` at ``n_ctx`` (default: 4096 capped at the model's), and whether it fits.

    ``quant`` estimates an HF checkpoint (or a requantized GGUF) as that output type. With ``n_gpu_layers`` and
    ``vram`` the fit is judged on both pools. ``embedding``: a context for embeddings (``embedding_compute_bytes``).
    """
    from tuillm.core.models.hardware import available_ram

    n_ctx = n_ctx or default_ctx(info)
    if info.format == "hf" and quant is None:
        quant = "f16" if info.file_type not in ("F32",) else "f32"
    weights = weights_bytes(info, quant)
    kv = kv_bytes(info, n_ctx, kv_type)
    avail = available_ram() if available is None else available
    n_layers = max(info.n_layers, 1)
    offloaded = min(max(n_gpu_layers, 0), n_layers + 1)
    if offloaded:
        # The GPU holds its layers' weights and KV cells and allocates its whole compute reservation; the CPU
        # keeps the rest, and a compute buffer of its own only while some layers still run there.
        share = min(offloaded, n_layers) / n_layers
        gpu_weights = _split_weights(info, weights, offloaded)
        gpu_compute = compute_bytes(info, n_ctx, n_batch, flash_attn, reserved=True, embedding=embedding)
        vram_need = gpu_weights + int(kv * share) + gpu_compute
        cpu_compute = compute_bytes(info, n_ctx, n_batch, flash_attn, embedding=embedding) \
            if offloaded < n_layers else 0
        ram_need = weights - gpu_weights + (kv - int(kv * share)) + cpu_compute
        comp = gpu_compute + cpu_compute
    else:
        comp = compute_bytes(info, n_ctx, n_batch, flash_attn, embedding=embedding)
        vram_need, ram_need = 0, weights + kv + comp
    total = ram_need + vram_need
    fit = classify(ram_need, avail)
    if offloaded and vram is not None:
        gpu_fit = classify(vram_need, vram)
        fit = max(fit, gpu_fit, key=(FITS, TIGHT, TOO_BIG).index)
    return MemoryEstimate(n_ctx=n_ctx, weights_bytes=weights, kv_bytes=kv, compute_bytes=comp, total_bytes=total,
                          available_bytes=avail, fit=fit, n_gpu_layers=offloaded, vram_bytes=vram_need)


def max_context(info: ModelInfo, available: int | None = None, *, kv_type: str = "f16",
                flash_attn: bool = False, quant: str | None = None) -> int:
    """The largest context (a multiple of 256, or the model's own when that is none: a 128-token model) that still
    "fits"; 0 if none does."""
    limit = info.context_length or 131072
    lo, hi = 0, limit // CTX_PAD
    while lo < hi:  # binary search over multiples of CTX_PAD: the estimate grows with n_ctx
        mid = (lo + hi + 1) // 2
        e = estimate(info, mid * CTX_PAD, kv_type=kv_type, flash_attn=flash_attn, quant=quant, available=available)
        if e.fit == FITS:
            lo = mid
        else:
            hi = mid - 1
    best = lo * CTX_PAD
    if lo == limit // CTX_PAD and best < limit:  # every multiple below the model's context fits: does it?
        e = estimate(info, limit, kv_type=kv_type, flash_attn=flash_attn, quant=quant, available=available)
        return limit if e.fit == FITS else best
    return best


def gpu_layers_for(info: ModelInfo, vram: int, n_ctx: int | None = None, *, kv_type: str = "f16") -> int:
    """The largest ``n_gpu_layers`` whose GPU share fits ``vram`` with headroom (n_layers + 1 = everything)."""
    best = 0
    for n in range(1, info.n_layers + 2):
        e = estimate(info, n_ctx, kv_type=kv_type, n_gpu_layers=n, available=1 << 62, vram=vram)
        if classify(e.vram_bytes, vram) != FITS:
            break
        best = n
    return best


# --- the GPU-layer policy when the user did not choose ------------------------------------------------------------


def _free_vram() -> int | None:
    """Free memory of the first NVIDIA GPU from nvidia-smi, or None when unknown (no NVIDIA tools, Metal...)."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        return int(out.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def default_gpu_layers(info: ModelInfo | None = None, n_ctx: int | None = None, kv_type: str = "f16",
                       offload: bool | None = None) -> int:
    """Layers to offload when the user did not say: none without a GPU build (``offload``; None: ask llama.cpp);
    with a known amount of free VRAM, as many as the estimate fits; otherwise (unified memory, unknown VRAM) all."""
    if offload is None:
        from tuillm.core.models.hardware import llama_backend

        offload = llama_backend()[0]
    if not offload:
        return 0
    vram = _free_vram() if info is not None else None
    if vram is None:
        return -1
    n = gpu_layers_for(info, vram, n_ctx, kv_type=kv_type)
    return -1 if n > info.n_layers else n


def quant_fits(
    info: ModelInfo, n_ctx: int | None = None, available: int | None = None
) -> list[tuple[str, MemoryEstimate]]:
    """For an HF checkpoint: each output type with its estimate, largest first (``fit`` says which fit)."""
    return [(quant, estimate(info, n_ctx, quant=quant, available=available)) for quant in QUANT_BPW]


def fitting_quants(info: ModelInfo, n_ctx: int | None = None, available: int | None = None) -> list[str]:
    """The output types an HF checkpoint would fit as, with headroom, largest first."""
    return [quant for quant, est in quant_fits(info, n_ctx, available) if est.fit == FITS]


def estimate_for_load(info: ModelInfo, options: LoadOptions, available: int | None = None,
                      offload: bool | None = None, *, embedding: bool = False) -> MemoryEstimate:
    """The estimate for loading ``info`` with ``options``: what the Models pane, ``tuillm models`` and ``info``
    mark (through core.models.fit) and what the chat checks before it loads. ``n_gpu_layers`` None means what the
    engine does by default: everything when llama.cpp can offload (``offload``; None: ask llama.cpp), else
    nothing; -1 means every layer. Without offload every layer counts as RAM, as llama.cpp then ignores
    n_gpu_layers."""
    if offload is None:
        from tuillm.core.models.hardware import llama_backend

        offload = llama_backend()[0]
    n_gpu_layers = options.n_gpu_layers
    if n_gpu_layers is None:
        n_gpu_layers = -1 if offload else 0
    elif not offload:
        n_gpu_layers = 0  # a CPU-only llama.cpp keeps every layer in RAM whatever was asked
    if n_gpu_layers < 0:
        n_gpu_layers = info.n_layers + 1
    return estimate(info, options.n_ctx, kv_type=options.kv_type, n_batch=options.n_batch,
                    flash_attn=options.flash_attn, n_gpu_layers=n_gpu_layers, available=available,
                    embedding=embedding)


def load_refusal(info: ModelInfo, options: LoadOptions, available: int | None = None,
                 offload: bool | None = None, *, embedding: bool = False) -> str | None:
    """Why a load with ``options`` would be refused (its estimate is "too big"), or None when it may go ahead;
    ``embedding``: a context for embeddings."""
    est = estimate_for_load(info, options, available, offload=offload, embedding=embedding)
    if est.fit != TOO_BIG:
        return None
    return (f"{info.path.name}: a context of {options.n_ctx} tokens needs about {format_bytes(est.total_bytes)} "
            f"(weights {format_bytes(est.weights_bytes)}, KV cache {format_bytes(est.kv_bytes)}), only "
            f"{format_bytes(est.available_bytes)} is available; choose a smaller context")


def fit_advice(info: ModelInfo, options: LoadOptions, available: int | None = None) -> str:
    """One line of advice: for a GGUF, the largest context that fits with headroom (with the options' KV type and
    flash attention); for an HF checkpoint, the GGUF types it would fit as (at the options' context)."""
    if info.format == "gguf":
        ctx = max_context(info, available, kv_type=options.kv_type, flash_attn=options.flash_attn)
        if ctx == 0:
            return "does not fit at any context: free memory or pick a smaller quant"
        return f"largest context that fits: {ctx:,} tokens"
    fitting = fitting_quants(info, options.n_ctx, available)
    if not fitting:
        return "fits as no GGUF type, even q2_k"
    if len(fitting) == len(QUANT_BPW):
        return "fits as any GGUF type, f32 included"
    return f"fits as GGUF {fitting[0]} or smaller ({', '.join(fitting[:4])}{'…' if len(fitting) > 4 else ''})"
