"""What llama.cpp can take in GGUF metadata: the types and ranges of the keys it (and our readers) use.

Checked when a header is read (``gguf_header.read_gguf_header``), so a file that would abort llama.cpp
(a GGML_ASSERT in ``llama_model_base::load_hparams``, or in a kernel at the first token) or make a reader of ours
trip over a string where a count belongs is refused in one line naming the key. Keys a file does not have are not
checked: llama.cpp refuses a missing required key cleanly, and LoRA adapters carry few of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# llama.cpp's limits, as the bundled build has them (llama-hparams.h; the expert limit measured: an expert_count of
# 1024 loads, 1025 aborts) and the widths of the integers it keeps them in.
LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 1024
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
# llama_rope_scaling_type_from_string: any other name aborts the load.
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")

# GGUF value types (gguf.GGUFValueType) by the kind of Python value they give.
INT_TYPES = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
FLOAT_TYPES = frozenset({6, 12})
STRING_TYPE, ARRAY_TYPE = 8, 9
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
               8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}


class MetadataError(ValueError):
    """A metadata value llama.cpp cannot take; the message names the key."""


@dataclass(frozen=True)
class Rule:
    kind: str  # "int", "float" or "str"
    array: str = "no"  # "no": a scalar; "yes": an array; "per-layer": a scalar or one value per layer
    lo: float = 0
    hi: float = UINT32_MAX
    positive: bool = False  # floats: strictly above ``lo``
    choices: tuple[str, ...] = ()

    def want(self) -> str:
        one = {"int": "an integer", "float": "a number", "str": "a string"}[self.kind]
        many = {"int": "integers", "float": "numbers", "str": "strings"}[self.kind]
        return {"no": one, "yes": f"an array of {many}", "per-layer": f"{one} or an array of {many}"}[self.array]

    def accepts_type(self, vtype: int) -> bool:
        if self.kind == "int":
            return vtype in INT_TYPES
        if self.kind == "float":
            return vtype in FLOAT_TYPES or vtype in INT_TYPES
        return vtype == STRING_TYPE


GENERAL_RULES: dict[str, Rule] = {
    "general.architecture": Rule("str"),
    "general.name": Rule("str"),
    "general.type": Rule("str"),
    "general.file_type": Rule("int"),
    "general.alignment": Rule("int", lo=1, hi=2**30),
    "tokenizer.chat_template": Rule("str"),
    "tokenizer.ggml.model": Rule("str"),
    "tokenizer.ggml.pre": Rule("str"),
    "tokenizer.ggml.tokens": Rule("str", array="yes"),
    "tokenizer.ggml.merges": Rule("str", array="yes"),
    "tokenizer.ggml.token_type": Rule("int", array="yes", lo=-INT32_MAX, hi=INT32_MAX),
    "tokenizer.ggml.scores": Rule("float", array="yes", lo=-math.inf, hi=math.inf),
}
# Keys under "<general.architecture>.".
ARCH_RULES: dict[str, Rule] = {
    "context_length": Rule("int", lo=1, hi=INT32_MAX),
    "embedding_length": Rule("int", lo=1),
    "block_count": Rule("int", lo=1, hi=LLAMA_MAX_LAYERS),
    "feed_forward_length": Rule("int", array="per-layer"),
    "attention.head_count": Rule("int", array="per-layer"),
    "attention.head_count_kv": Rule("int", array="per-layer"),
    "attention.key_length": Rule("int"),
    "attention.value_length": Rule("int"),
    "rope.dimension_count": Rule("int"),
    "vocab_size": Rule("int"),
    "expert_count": Rule("int", hi=LLAMA_MAX_EXPERTS),
    "expert_used_count": Rule("int", array="per-layer", hi=LLAMA_MAX_EXPERTS),
    "expert_group_count": Rule("int", hi=LLAMA_MAX_EXPERTS),
    "expert_group_used_count": Rule("int", hi=LLAMA_MAX_EXPERTS),
    "nextn_predict_layers": Rule("int", hi=LLAMA_MAX_LAYERS),
    # A negative or NaN epsilon aborts the first token (ggml's rms_norm asserts eps >= 0).
    "attention.layer_norm_rms_epsilon": Rule("float", hi=math.inf),
    "attention.layer_norm_epsilon": Rule("float", hi=math.inf),
    "rope.freq_base": Rule("float", hi=math.inf, positive=True),
    "rope.scaling.factor": Rule("float", hi=math.inf),
    "rope.scaling.type": Rule("str", choices=ROPE_SCALING_TYPES),
}


def shown(text: str) -> str:
    """A key or value from a file, safe to print in one line: as is when printable, else Python's escaped repr."""
    return text if text.isprintable() else repr(text)


def type_name(vtype: int, item_type: int | None) -> str:
    name = _TYPE_NAMES.get(vtype, f"type {vtype}")
    return f"an array of {_TYPE_NAMES.get(item_type or 0, '?')}" if vtype == ARRAY_TYPE else f"a {name}"


def _in_range(rule: Rule, value: Any) -> bool:
    if rule.kind == "str":
        return not rule.choices or value in rule.choices
    if rule.kind == "float" and not math.isfinite(value):
        return rule.lo == -math.inf and rule.hi == math.inf and not math.isnan(value)
    if rule.positive and value <= rule.lo:
        return False
    return rule.lo <= value <= rule.hi


def _range_text(rule: Rule) -> str:
    if rule.choices:
        return f"one of {', '.join(rule.choices)}"
    if rule.kind == "float":
        return f"a finite number {'>' if rule.positive else '>='} {rule.lo:g}"
    return f"{int(rule.lo)} to {int(rule.hi)}"


def check_value(key: str, rule: Rule, vtype: int, item_type: int | None, value: Any) -> None:
    """One key's type and range; MetadataError names the key and what llama.cpp takes."""
    is_array = vtype == ARRAY_TYPE
    type_ok = (rule.array != "no" if is_array else rule.array != "yes") and rule.accepts_type(
        item_type if is_array and item_type is not None else vtype)
    if not type_ok:
        raise MetadataError(f"metadata {key} is {type_name(vtype, item_type)}, expected {rule.want()}")
    for item in value if isinstance(value, list) else ([] if is_array else [value]):
        if not _in_range(rule, item):
            text = repr(item) if isinstance(item, str) else f"{item:g}" if isinstance(item, float) else str(item)
            raise MetadataError(f"metadata {key} = {text} is out of range (llama.cpp takes {_range_text(rule)})")


def _largest(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    if isinstance(value, list):
        return max(value, default=0)
    return value if isinstance(value, int) else None


def _check_together(fields: Mapping[str, Any], arch: str) -> None:
    """The checks of load_hparams that relate two keys."""
    def get(name: str) -> int | None:
        return _largest(fields, f"{arch}.{name}")

    def refuse(a: str, relation: str, b: str) -> None:
        raise MetadataError(f"metadata {arch}.{a} = {get(a)} {relation} {arch}.{b} = {get(b) or 0}")

    layers, nextn = get("block_count"), get("nextn_predict_layers")
    if layers is not None and nextn is not None and nextn > layers:
        refuse("nextn_predict_layers", "exceeds", "block_count")
    n_expert, used = get("expert_count") or 0, get("expert_used_count") or 0
    groups, groups_used = get("expert_group_count") or 0, get("expert_group_used_count") or 0
    if used > n_expert:
        refuse("expert_used_count", "exceeds", "expert_count")
    if n_expert > 0 and used == 0:
        refuse("expert_count", "needs a positive", "expert_used_count")
    if groups and (groups >= n_expert or (groups > 1 and n_expert % groups)):
        refuse("expert_group_count", "does not divide", "expert_count")
    if groups > 1 and not 0 < groups_used < groups:
        refuse("expert_group_used_count", "must be positive and below", "expert_group_count")
    embd, heads, kv_heads = get("embedding_length"), get("attention.head_count"), get("attention.head_count_kv")
    if embd is not None and heads is not None and heads > embd:
        refuse("attention.head_count", "exceeds", "embedding_length")
    if heads is not None and kv_heads is not None and kv_heads > heads:
        refuse("attention.head_count_kv", "exceeds", "attention.head_count")


def check_metadata(fields: Mapping[str, Any], types: Mapping[str, tuple[int, int | None]]) -> None:
    """Every known key's type and range, then the relations between them; MetadataError on the first problem."""
    arch = fields.get("general.architecture")
    prefix = f"{arch}." if isinstance(arch, str) else None
    for key, (vtype, item_type) in types.items():
        rule = GENERAL_RULES.get(key)
        if rule is None and prefix is not None and key.startswith(prefix):
            rule = ARCH_RULES.get(key[len(prefix):])
        if rule is not None:
            check_value(key, rule, vtype, item_type, fields[key])
    alignment = fields.get("general.alignment")
    if isinstance(alignment, int) and alignment & (alignment - 1):
        raise MetadataError(f"metadata general.alignment = {alignment} is not a power of two")
    if prefix is not None:
        _check_together(fields, arch)
