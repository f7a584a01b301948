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


def _check_adapter_config(path: Path, config: dict) -> None:
    """The values the conversion computes with: a positive integer rank, a finite alpha, flags as booleans."""
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConvertError(f"{path}: r = {json_shown(rank)} is not a positive integer")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)
                              or not math.isfinite(alpha)):
        raise ConvertError(f"{path}: lora_alpha = {json_shown(alpha)} is not a finite number")
    for key in ("use_rslora", "use_dora"):
        if config.get(key) is not None and not isinstance(config[key], bool):
            raise ConvertError(f"{path}: {key} = {json_shown(config[key])} is not true or false")
    if not isinstance(config.get("peft_type", "LORA"), str):
        raise ConvertError(f"{path}: peft_type is not a string")
    for key in ("target_modules", "modules_to_save"):  # peft takes a name (a pattern) or a list of names
        names = config.get(key)
        if names is not None and not isinstance(names, str) and not (
                isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ConvertError(f"{path}: {key} = {json_shown(names)} is not a module name or a list of them")


def open_adapter(folder: Path) -> Adapter:
    """Read and check a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)."""
    folder = Path(folder)
    cfg_path = folder / "adapter_config.json"
    if not folder.is_dir():
        raise ConvertError(f"{folder}: not a folder (expected a LoRA adapter folder)")
    if not cfg_path.is_file():
        raise ConvertError(f"{folder}: no adapter_config.json (not a finished PEFT LoRA adapter)")
    config = read_json_object(cfg_path)
    _check_adapter_config(cfg_path, config)
    if config.get("peft_type", "LORA") != "LORA":
        raise ConvertError(f"{folder}: a {config.get('peft_type')} adapter; only LoRA adapters are supported")
    if config.get("use_dora"):
        raise ConvertError(f"{folder}: DoRA adapters are not supported by llama.cpp; use merge instead")
    if config.get("alpha_pattern"):
        raise ConvertError(f"{folder}: per-module alpha (alpha_pattern) cannot be expressed in a GGUF adapter")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConvertError(f"{folder}: no adapter_model.safetensors")
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
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1]:
            raise ConvertError(f"{folder}: {module}: lora_A {a.shape} and lora_B {b.shape} do not pair")
        pairs.append(LoraPair(module, ab["A"], ab["B"], a.shape[0], a.shape[1], b.shape[0]))
    if not pairs:
        raise ConvertError(f"{folder}: the adapter holds no LoRA weights")
    odd = next((p for p in pairs if p.rank != config["r"]), None)
    if odd is not None and not config.get("rank_pattern"):  # its scale alpha/r would be wrong, or peft's load fail
        raise ConvertError(f"{cfg_path}: r = {config['r']}, but {odd.module}'s LoRA weights have rank {odd.rank}")
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
                           "it was trained on another model")


def _read_f32(ck: Checkpoint, name: str) -> np.ndarray:
    raw = ck.read_raw(name)
    if ck.tensors[name].dtype == "BF16":
        return bf16_to_f32(raw)
    return raw.astype(np.float32, copy=False)


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
            a = _read_f32(adapter.tensors, pair.a)
            b = _read_f32(adapter.tensors, pair.b)
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
