"""A PEFT LoRA adapter folder -> a GGUF LoRA adapter that llama.cpp loads beside its base GGUF.

The file follows llama.cpp's convention (convert_lora_to_gguf.py): ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, the base's architecture, and for every adapted weight ``W`` of
the base two tensors named like the base's GGUF tensor plus ``.lora_a`` (PEFT's lora_A, ``[rank, in]``) and
``.lora_b`` (lora_B, ``[out, rank]``). llama.cpp scales by ``alpha / rank`` (rank read from each tensor), as PEFT
does. Where the converter permutes q/k rows for llama.cpp's rope, lora_b's rows get the same permutation.

No torch: the adapter's safetensors are read with numpy; the base checkpoint only for its config and shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from tuillm.convert.archs import find_arch
from tuillm.convert.archs.base import Arch
from tuillm.convert.checkpoint import Checkpoint, bf16_to_f32, open_checkpoint, read_json_object
from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import json_shown
from tuillm.convert.output import atomic_output
from tuillm.convert.safetensors_header import SafetensorsError, read_header
from tuillm.convert.tensors import ggml_type, permute_rope
from tuillm.convert.types import CONVERT_DEFAULT, UNQUANTIZED_TYPE_NAMES

ADAPTER_TYPES = UNQUANTIZED_TYPE_NAMES  # llama.cpp applies an adapter in float
_LORA = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass
class LoraPair:
    module: str  # the base module, e.g. model.layers.0.self_attn.q_proj
    a: str  # tensor names in the adapter file
    b: str
    rank: int
    in_features: int
    out_features: int


@dataclass
class Adapter:
    folder: Path
    config: dict
    tensors: Checkpoint
    pairs: list[LoraPair]

    @property
    def rank(self) -> int:
        return int(self.config.get("r", 0))

    @property
    def alpha(self) -> float:
        return float(self.config.get("lora_alpha", self.rank))

    def gguf_alpha(self) -> float:
        """The alpha llama.cpp needs to apply PEFT's scale (alpha/rank, or alpha/sqrt(rank) for rsLoRA)."""
        if self.config.get("use_rslora"):
            return self.alpha * math.sqrt(self.rank)
        return self.alpha


# peft's initialisations that only set lora_A/lora_B (overwritten by the saved weights when an adapter loads); the
# others (PiSSA, OLoRA, CorDA, LoftQ, ...) change the base's weights on load, which a GGUF adapter cannot say.
SAFE_INITS = (True, False, "gaussian", "eva", "orthogonal")
# peft variants of LoRA that change what the adapter computes (or the base's layers): a GGUF adapter cannot say them,
# and a merge would be another model than the adapter's (or fail inside peft).
VARIANT_KEYS = ("layer_replication", "trainable_token_indices", "target_parameters", "alora_invocation_tokens",
                "arrow_config", "use_qalora", "use_bdlora", "kasa_config", "monteclora_config", "velora_config")
MAX_CONFIG_BYTES = 16 << 20  # an adapter_config.json is a few KB
_F32_MAX = float(np.finfo(np.float32).max)
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _names(value: object) -> bool:
    """A module name or pattern (a regular expression peft matches), or a list of names."""
    if isinstance(value, list):
        return all(isinstance(n, str) for n in value)
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


def _check_adapter_config(path: Path, config: dict) -> None:
    """The values the conversion computes with: a positive integer rank, a finite alpha, flags as booleans."""
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConvertError(f"{path}: r = {json_shown(rank)} is not a positive integer")
    if alpha is not None and not _number(alpha):
        raise ConvertError(f"{path}: lora_alpha = {json_shown(alpha)} is not a finite number")
    if alpha is not None and not 0 < alpha * (math.sqrt(rank) if config.get("use_rslora") else 1) <= _F32_MAX:
        raise ConvertError(f"{path}: lora_alpha = {json_shown(alpha)} is out of range (above 0, within float32)")
    for key in ("use_rslora", "use_dora", "lora_bias"):
        if config.get(key) is not None and not isinstance(config[key], bool):
            raise ConvertError(f"{path}: {key} = {json_shown(config[key])} is not true or false")
    if not isinstance(config.get("peft_type", "LORA"), str):
        raise ConvertError(f"{path}: peft_type is not a string")
    for key in ("target_modules", "modules_to_save", "exclude_modules", "layers_pattern"):
        names = config.get(key)  # peft takes a name (a pattern) or a list of names
        if names is not None and not _names(names):
            raise ConvertError(f"{path}: {key} = {json_shown(names)} is not a module name or a list of them")
    _check_peft_values(path, config)


def _check_peft_values(path: Path, config: dict) -> None:
    """The rest of what peft reads when it loads the adapter for a merge: the right types, no variant of LoRA."""
    dropout = config.get("lora_dropout")
    if dropout is not None and not (_number(dropout) and 0 <= dropout <= 1):
        raise ConvertError(f"{path}: lora_dropout = {json_shown(dropout)} is not a number from 0 to 1")
    for key, fits in (("rank_pattern", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                      ("alpha_pattern", _number)):
        pattern = config.get(key)
        if pattern is not None and not (isinstance(pattern, dict) and all(fits(v) for v in pattern.values())):
            raise ConvertError(f"{path}: {key} = {json_shown(pattern)} is not an object of module names to numbers")
    layers = config.get("layers_to_transform")
    if layers is not None and not (isinstance(layers, int) or (
            isinstance(layers, list) and all(isinstance(n, int) for n in layers))):
        raise ConvertError(f"{path}: layers_to_transform = {json_shown(layers)} is not a layer number or a list of "
                           "them")
    init = config.get("init_lora_weights", True)
    if not any(init is safe if isinstance(safe, bool) else init == safe for safe in SAFE_INITS):
        raise ConvertError(f"{path}: init_lora_weights = {json_shown(init)} is not supported (only true, false, "
                           "gaussian, eva or orthogonal: the others change the base's weights when the adapter loads)")
    variant = next((key for key in VARIANT_KEYS if config.get(key) not in (None, False, [], {})), None)
    if variant is not None:
        raise ConvertError(f"{path}: {variant} = {json_shown(config[variant])}: a variant of LoRA that cannot be "
                           "merged or exported")


def _check_pairs(cfg_path: Path, config: dict, pairs: list[LoraPair]) -> None:
    """The config says what the weights are: peft loads the modules it names, at the ranks it gives them."""
    targets = config.get("target_modules")
    stray = next((p.module for p in pairs if isinstance(targets, list) and not any(
        p.module == t or p.module.endswith("." + t) for t in targets)), None)
    if stray is not None:  # peft would not load these weights: a merge and the GGUF adapter would differ
        raise ConvertError(f"{cfg_path}: target_modules = {json_shown(targets)} does not name {stray}, which the "
                           "adapter's weights are for")
    odd = next((p for p in pairs if p.rank != config["r"]), None)
    if odd is not None and not config.get("rank_pattern"):  # its scale alpha/r would be wrong, or peft's load fail
        raise ConvertError(f"{cfg_path}: r = {config['r']}, but {odd.module}'s LoRA weights have rank {odd.rank}")
    ranks = {p.rank for p in pairs}
    stray_rank = next((r for r in (config.get("rank_pattern") or {}).values() if r not in ranks), None)
    if stray_rank is not None:  # peft would build layers of that rank (of 10**30: an overflow inside torch)
        raise ConvertError(f"{cfg_path}: rank_pattern gives rank {stray_rank}, which no LoRA weight of the adapter "
                           "has")


def open_adapter(folder: Path) -> Adapter:
    """Read and check a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)."""
    folder = Path(folder)
    cfg_path = folder / "adapter_config.json"
    if not folder.is_dir():
        raise ConvertError(f"{folder}: not a folder (expected a LoRA adapter folder)")
    if not cfg_path.is_file():
        raise ConvertError(f"{folder}: no adapter_config.json (not a finished PEFT LoRA adapter)")
    if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConvertError(f"{cfg_path}: larger than {MAX_CONFIG_BYTES >> 20} MiB (not an adapter config)")
    config = read_json_object(cfg_path)
    _check_adapter_config(cfg_path, config)
    if config.get("peft_type", "LORA") != "LORA":
        raise ConvertError(f"{folder}: a {json_shown(config.get('peft_type'))} adapter; only LoRA adapters are "
                           "supported")
    if config.get("use_dora"):
        raise ConvertError(f"{folder}: DoRA adapters are not supported by llama.cpp; use merge instead")
    if config.get("alpha_pattern"):
        raise ConvertError(f"{folder}: per-module alpha (alpha_pattern) cannot be expressed in a GGUF adapter")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        pickle = " (adapter_model.bin is a pickle, never loaded: save the adapter as safetensors)" if (
            folder / "adapter_model.bin").exists() else ""
        raise ConvertError(f"{folder}: no adapter_model.safetensors{pickle}")
    try:
        entries, _ = read_header(weights)
    except SafetensorsError as exc:
        raise ConvertError(f"{weights}: {exc}") from None
    parts: dict[str, dict[str, str]] = {}
    for name in entries:
        m = _LORA.match(name)
        if m is None:
            if "lora_embedding" in name:
                raise ConvertError(f"{folder}: LoRA on embeddings ({name}) is not supported; use merge instead")
            raise ConvertError(f"{folder}: tensor {name} is not a LoRA weight (modules_to_save?); use merge "
                               "instead")
        parts.setdefault(m.group("module"), {})[m.group("ab")] = name
    pairs = []
    for module, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise ConvertError(f"{folder}: {module} has lora_{'A' if 'A' in ab else 'B'} without its pair")
        a, b = entries[ab["A"]], entries[ab["B"]]
        odd = next((n for n in (ab["A"], ab["B"]) if entries[n].dtype not in _FLOAT_DTYPES), None)
        if odd is not None:  # the bytes of floats declared integers load as huge numbers, and merge without a word
            raise ConvertError(f"{weights}: tensor {odd!r} is {entries[odd].dtype}, not a float type (LoRA weights "
                               "are F32, F16, BF16 or F64)")
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1]:
            raise ConvertError(f"{folder}: {module}: lora_A {a.shape} and lora_B {b.shape} do not pair")
        pairs.append(LoraPair(module, ab["A"], ab["B"], a.shape[0], a.shape[1], b.shape[0]))
    if not pairs:
        raise ConvertError(f"{folder}: the adapter holds no LoRA weights")
    _check_pairs(cfg_path, config, pairs)
    return Adapter(folder, config, Checkpoint(folder, config, entries), pairs)


def check_fits(adapter: Adapter, base: Checkpoint) -> None:
    """One error when the adapter was not trained on this base (other architecture or shapes)."""
    problems = []
    for pair in adapter.pairs:
        entry = base.tensors.get(pair.module + ".weight")
        if entry is None:
            problems.append(f"{pair.module} is not in the base")
        elif tuple(entry.shape) != (pair.out_features, pair.in_features):
            problems.append(f"{pair.module} is {pair.out_features}x{pair.in_features} in the adapter but "
                            f"{entry.shape[0]}x{entry.shape[1]} in the base")
    if problems:
        arch = base.config.get("model_type", "?")
        raise ConvertError(f"{adapter.folder} does not fit the base {base.folder} ({arch}): {problems[0]}"
                           f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}; "
                           "give the base it was trained on")


def _read_f32(ck: Checkpoint, name: str) -> np.ndarray:
    raw = ck.read_raw(name)
    if ck.tensors[name].dtype == "BF16":
        return bf16_to_f32(raw)
    return raw.astype(np.float32, copy=False)


def finite_f32(adapter: Adapter, name: str) -> np.ndarray:
    """A tensor of the adapter as float32, refused when it holds inf or NaN: merged or applied, every output of the
    model would be NaN."""
    values = _read_f32(adapter.tensors, name)
    if not np.isfinite(values).all():
        raise ConvertError(f"{adapter.folder}: {name} holds values that are not finite (inf or NaN): the adapter is "
                           "broken (did its training diverge?)")
    return values


def check_finite(adapter: Adapter) -> None:
    """Every LoRA weight of the adapter finite (each tensor read once, on its own: an adapter is small)."""
    for pair in adapter.pairs:
        for name in (pair.a, pair.b):
            finite_f32(adapter, name)


def _permute_heads(arch: Arch, config: dict, module: str) -> int | None:
    if not arch.permute_qk:
        return None
    n_head = int(config["num_attention_heads"])
    if module.endswith(".q_proj"):
        return n_head
    if module.endswith(".k_proj"):
        return int(config.get("num_key_value_heads") or n_head)
    return None


def lora_to_gguf(adapter_dir: Path, base_dir: Path, out_path: Path, out_type: str = CONVERT_DEFAULT, *,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``out_path`` (through a temporary name) from the adapter and its base HF checkpoint folder."""
    out_type = out_type.lower()
    if out_type not in ADAPTER_TYPES:
        raise ConvertError(f"unknown adapter type {out_type!r}; choose one of {', '.join(ADAPTER_TYPES)}")
    adapter = open_adapter(Path(adapter_dir))
    base = open_checkpoint(Path(base_dir))
    arch = find_arch(base.config)
    check_fits(adapter, base)
    n_layer = int(base.config.get("num_hidden_layers") or base.config.get("n_layer") or 0)
    names = gguf.get_tensor_name_map(arch.gguf_arch, n_layer)
    planned: list[tuple[str, LoraPair]] = []
    for pair in adapter.pairs:
        gguf_name = names.get_name(pair.module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise ConvertError(f"{pair.module} has no GGUF name for {arch.name}")
        planned.append((gguf_name, pair))
    qtype = ggml_type(out_type)
    with atomic_output(Path(out_path), "lora") as tmp:
        writer = gguf.GGUFWriter(tmp, arch.gguf_name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.gguf_alpha())
        writer.add_name(Path(adapter_dir).name)
        for i, (gguf_name, pair) in enumerate(planned):
            a = finite_f32(adapter, pair.a)
            b = finite_f32(adapter, pair.b)
            heads = _permute_heads(arch, base.config, pair.module)
            if heads:  # the converter's row interleave for llama.cpp's rope, on lora_b's output rows
                b = permute_rope(b, heads)
            for suffix, values in ((".lora_a", a), (".lora_b", b)):
                if qtype == gguf.GGMLQuantizationType.F32:
                    data = np.ascontiguousarray(values, dtype=np.float32)
                elif qtype == gguf.GGMLQuantizationType.F16:
                    data = values.astype(np.float16)
                else:
                    data = gguf.quants.quantize(values, qtype)
                writer.add_tensor(gguf_name + suffix, data, raw_dtype=qtype if qtype == gguf.GGMLQuantizationType.BF16
                                  else None)
            if progress is not None:
                progress(i + 1, len(planned))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out_path)
