"""Model metadata without loading weights: GGUF headers, and HF folders via config.json and safetensors headers."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tuillm.convert.errors import JSONFileError
from tuillm.convert.gguf_header import GGUFHeader, GGUFHeaderError, SkippedArray, TensorInfo, read_gguf_header
from tuillm.convert.safetensors_header import SafetensorsError, checkpoint_files, read_header
from tuillm.core.errors import ModelFileError
from tuillm.core.files import input_problem
from tuillm.core.paths import expand_user

LAYER_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    format: str  # "gguf" | "hf"
    name: str
    arch: str
    params: int
    file_type: str  # "Q4_1", "F16", "BF16", ...
    size_bytes: int
    context_length: int
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    vocab_size: int
    chat_template: str | None
    head_dim_k: int = 0
    head_dim_v: int = 0
    kind: str = "model"  # GGUF general.type: "model" or "adapter" (a LoRA)
    # Bytes of weights per repeating layer, and of everything else (embeddings, output head, norms): what the
    # memory estimate needs to know which part a partial GPU offload moves.
    layer_bytes: tuple[int, ...] = field(default=(), repr=False)
    other_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["layer_bytes"] = list(self.layer_bytes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        """The inverse of ``to_json``; TypeError or KeyError when an entry (a cached one, say) is not of that
        shape, field by field, so nothing downstream meets a string where a count belongs."""
        data = dict(data)
        if not isinstance(data.get("path"), str):
            raise TypeError("path is not a string")
        data["path"] = Path(data["path"])
        layer_bytes = data.get("layer_bytes", [])
        if not isinstance(layer_bytes, list) or not all(_is_count(b) for b in layer_bytes):
            raise TypeError("layer_bytes is not a list of counts")
        data["layer_bytes"] = tuple(layer_bytes)
        for f in fields(cls):
            value = data.get(f.name, f.default)
            if (f.type == "int" and not _is_count(value)) or (f.type == "str" and not isinstance(value, str)) \
                    or (f.type == "str | None" and value is not None and not isinstance(value, str)):
                raise TypeError(f"{f.name} is not a {f.type}")
        return cls(**data)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_info(path: str | Path) -> ModelInfo:
    """Metadata of a GGUF file or an HF checkpoint folder; a ModelFileError names the path and the problem."""
    p = expand_user(path)
    problem = input_problem(p)
    if problem:
        raise ModelFileError(p, problem)
    if p.is_dir():
        return read_hf_info(p)
    return read_gguf_info(p)


def read_lora_info(path: Path) -> ModelInfo:
    """Metadata of a LoRA adapter GGUF (chat's and serve's ``--lora``); a ModelFileError for anything else. A folder
    is refused unread: most often a PEFT adapter, what `tuillm train` writes."""
    if path.is_dir():
        raise ModelFileError(path, "a folder, not a LoRA adapter GGUF (export one from a trained adapter with "
                             "`tuillm export-lora`)")
    info = read_info(path)
    if info.format != "gguf" or info.kind != "adapter":
        raise ModelFileError(path, "not a LoRA adapter GGUF (export one with `tuillm export-lora`)")
    return info


# --- GGUF -----------------------------------------------------------------------------------------------------


def _file_type_name(fields: dict[str, Any], tensors: list[TensorInfo]) -> str:
    from gguf import LlamaFileType

    ft = fields.get("general.file_type")
    if isinstance(ft, int):
        try:
            return LlamaFileType(ft).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    # No (known) file type: name the type that holds most of the bytes.
    by_type: dict[str, int] = {}
    for t in tensors:
        by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
    return max(by_type, key=by_type.__getitem__) if by_type else "unknown"


def checked_gguf_header(path: Path) -> GGUFHeader:
    """The header of a GGUF file, its metadata checked against what llama.cpp can load (convert.gguf_checks): the
    gate before anything hands the file to llama.cpp. A ModelFileError names the file and the key."""
    try:
        return read_gguf_header(path)
    except GGUFHeaderError as exc:
        raise ModelFileError(path, str(exc)) from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot read ({exc.strerror or exc.__class__.__name__})") from None


def read_gguf_info(path: Path) -> ModelInfo:
    header = checked_gguf_header(path)
    fields = header.fields
    arch = str(fields.get("general.architecture") or "unknown")

    def arch_key(key: str, default: Any = 0) -> Any:
        value = fields.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer arrays (some archs): the largest is what memory depends on
            value = max(value) if value else default
        return default if value is None or isinstance(value, SkippedArray) else value

    n_embd = int(arch_key("embedding_length"))
    n_head = int(arch_key("attention.head_count"))
    n_head_kv = int(arch_key("attention.head_count_kv", n_head))
    head_dim = n_embd // n_head if n_head else 0
    tokens = fields.get("tokenizer.ggml.tokens")
    vocab = int(arch_key("vocab_size", len(tokens) if tokens is not None else 0))

    layer_bytes: dict[int, int] = {}
    other = 0
    for t in header.tensors:
        m = LAYER_RE.match(t.name)
        if m:
            i = int(m.group(1))
            layer_bytes[i] = layer_bytes.get(i, 0) + t.n_bytes
        else:
            other += t.n_bytes
    template = fields.get("tokenizer.chat_template")
    return ModelInfo(
        path=path,
        format="gguf",
        name=str(fields.get("general.name") or path.stem),
        arch=arch,
        params=sum(t.n_elements for t in header.tensors),
        file_type=_file_type_name(fields, header.tensors),
        size_bytes=path.stat().st_size,
        context_length=int(arch_key("context_length")),
        n_layers=int(arch_key("block_count", len(layer_bytes))),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        vocab_size=vocab,
        chat_template=template if isinstance(template, str) and template else None,
        head_dim_k=int(arch_key("attention.key_length", head_dim)),
        head_dim_v=int(arch_key("attention.value_length", head_dim)),
        layer_bytes=tuple(layer_bytes.get(i, 0) for i in range(max(layer_bytes, default=-1) + 1)),
        other_bytes=other,
        kind=str(fields.get("general.type") or "model"),
    )


# --- Hugging Face folders ----------------------------------------------------------------------------------------


def hf_chat_template(folder: Path) -> str | None:
    """The folder's chat template, or None when there is none or its file cannot be read (not UTF-8, not JSON):
    a missing template is what chat already handles."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        try:
            template = json.loads(tc.read_text(encoding="utf-8")).get("chat_template")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError):
            return None
        if isinstance(template, list):  # named templates: the default one is what chat uses
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default") or next(iter(named.values()), None)
        return template if isinstance(template, str) else None
    return None


@dataclass
class _Weights:
    """What the safetensors headers of a checkpoint add up to."""

    params: int = 0
    size: int = 0  # bytes on disk
    by_dtype: dict[str, int] = field(default_factory=dict)  # dtype -> tensor bytes
    layer_bytes: dict[int, int] = field(default_factory=dict)  # layer index -> tensor bytes
    other: int = 0  # tensor bytes outside the repeating layers (embeddings, head)


_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


def _tally_weights(files: list[Path]) -> _Weights:
    weights = _Weights()
    for file in files:
        try:
            entries, _ = read_header(file)
        except SafetensorsError as exc:
            raise ModelFileError(file, str(exc)) from None
        weights.size += file.stat().st_size
        for e in entries.values():
            weights.params += e.n_elements
            weights.by_dtype[e.dtype] = weights.by_dtype.get(e.dtype, 0) + e.n_bytes
            m = _LAYER_RE.search(e.name)
            if m:
                weights.layer_bytes[int(m.group(1))] = weights.layer_bytes.get(int(m.group(1)), 0) + e.n_bytes
            else:
                weights.other += e.n_bytes
    return weights


def read_hf_info(folder: Path) -> ModelInfo:
    from tuillm.convert.checkpoint import read_config  # numpy and gguf: not at the app's start

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFileError(folder, "no config.json (not a Hugging Face checkpoint folder)")
    try:
        config = read_config(folder)  # checked: counts are integers in range, heads fit the hidden size
    except JSONFileError as exc:
        raise ModelFileError(exc.path, exc.problem) from None
    # Multimodal configs (gemma3) nest the language model's settings.
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    cfg = {**config, **text}
    try:
        files = checkpoint_files(folder)
    except SafetensorsError as exc:
        raise ModelFileError(folder, str(exc)) from None
    if not files:
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise ModelFileError(folder, "only pickled weights (.bin/.pt); tuillm reads safetensors")
        raise ModelFileError(folder, "no .safetensors weights")
    weights = _tally_weights(files)
    n_embd = int(cfg.get("hidden_size") or 0)
    n_head = int(cfg.get("num_attention_heads") or 0)
    head_dim = int(cfg.get("head_dim") or (n_embd // n_head if n_head else 0))
    archs = cfg.get("architectures") or []
    arch = str(cfg.get("model_type") or (archs[0] if archs else "unknown"))
    return ModelInfo(
        path=folder,
        format="hf",
        name=folder.name,
        arch=arch,
        params=weights.params,
        file_type=max(weights.by_dtype, key=weights.by_dtype.__getitem__) if weights.by_dtype else "unknown",
        size_bytes=weights.size,
        context_length=int(cfg.get("max_position_embeddings") or 0),
        n_layers=int(cfg.get("num_hidden_layers") or len(weights.layer_bytes)),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=int(cfg.get("num_key_value_heads") or n_head),
        vocab_size=int(cfg.get("vocab_size") or 0),
        chat_template=hf_chat_template(folder),
        head_dim_k=head_dim,
        head_dim_v=head_dim,
        layer_bytes=tuple(weights.layer_bytes.get(i, 0) for i in range(max(weights.layer_bytes, default=-1) + 1)),
        other_bytes=weights.other,
    )


def is_hf_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file()
    )


def format_params(n: int) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n)

