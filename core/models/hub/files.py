"""What a repository holds: its GGUF quants (split parts grouped), mmproj files, and checkpoint files.

Quant names come from the file names, as llama.cpp's ``-hf user/repo:Q4_K_M`` reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Longest alternatives first, so "Q4_K_M" wins over "Q4_K" and "IQ4_XS" over "Q4".
QUANT_RE = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]{1,4}){0,3})|BF16|F16|F32|FP16|FP32|MXFP4(?:_MOE)?)"
                      r"(?=[-_.])")
SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# llama.cpp's default tag when none is given.
PREFERRED_QUANT = "Q4_K_M"
CHECKPOINT_FILES = frozenset({
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "chat_template.json", "model.safetensors.index.json", "preprocessor_config.json",
})
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repository at one commit; ``sha256`` for LFS files (the Hub's checksum), ``blob_id`` (git's
    sha1 of the blob) for the others."""

    name: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class Quant:
    """One GGUF model of a repository: a file, or all parts of a split one (first part first)."""

    quant: str  # "Q4_K_M", or the file's stem when the name carries no quant
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def name(self) -> str:
        return self.files[0].name


@dataclass(frozen=True)
class RepoListing:
    repo: str
    commit: str
    files: tuple[RemoteFile, ...]
    gated: bool = False
    quants: tuple[Quant, ...] = field(default=())
    mmproj: tuple[RemoteFile, ...] = field(default=())


def quant_of(name: str) -> str | None:
    base = name.rsplit("/", 1)[-1]
    base = SPLIT_RE.sub(".gguf", base)
    matches = QUANT_RE.findall(base)
    return matches[-1].upper().replace("FP16", "F16").replace("FP32", "F32") if matches else None


def is_mmproj(name: str) -> bool:
    return "mmproj" in name.rsplit("/", 1)[-1].lower()


def group_quants(files: tuple[RemoteFile, ...]) -> tuple[tuple[Quant, ...], tuple[RemoteFile, ...]]:
    """The GGUF models (split parts grouped, incomplete splits left out) and the mmproj files."""
    mmproj = tuple(f for f in files if f.name.lower().endswith(".gguf") and is_mmproj(f.name))
    groups: dict[str, list[RemoteFile]] = {}
    numbers: dict[str, list[tuple[int, int]]] = {}  # (part, of how many) of each file of a group
    for f in files:
        if not f.name.lower().endswith(".gguf") or is_mmproj(f.name):
            continue
        m = SPLIT_RE.search(f.name)
        key = SPLIT_RE.sub("", f.name) if m else f.name
        groups.setdefault(key, []).append(f)
        numbers.setdefault(key, []).append((int(m.group(1)), int(m.group(2))) if m else (1, 1))
    quants = []
    for key, parts in groups.items():
        count = numbers[key][0][1]
        if sorted(numbers[key]) != [(i, count) for i in range(1, count + 1)]:
            continue  # a split missing parts (or naming one twice, or past its count) cannot load
        parts.sort(key=lambda f: f.name)
        label = quant_of(parts[0].name) or parts[0].name.rsplit("/", 1)[-1].removesuffix(".gguf")
        quants.append(Quant(label, tuple(parts)))
    quants.sort(key=lambda q: q.size)
    return tuple(quants), mmproj


def checkpoint_files(files: tuple[RemoteFile, ...]) -> tuple[RemoteFile, ...]:
    """Config, tokenizer and safetensors files of a checkpoint at the repo's top level; pickles never."""
    keep = []
    for f in files:
        if "/" in f.name or f.name.lower().endswith(PICKLE_SUFFIXES):
            continue
        if f.name in CHECKPOINT_FILES or f.name.endswith(".safetensors"):
            keep.append(f)
    return tuple(keep)


def find_file(quants: tuple[Quant, ...], name: str) -> Quant | None:
    return next((q for q in quants if any(f.name == name for f in q.files)), None)
