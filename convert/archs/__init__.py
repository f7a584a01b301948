"""Supported architectures, one module each; ``find_arch`` picks one from config.json."""

from __future__ import annotations

from tuillm.convert.archs import gemma2, gemma3, llama, mistral, phi3, qwen2, qwen3
from tuillm.convert.archs.base import Arch
from tuillm.convert.errors import ConvertError

ARCHS: tuple[Arch, ...] = (llama.ARCH, mistral.ARCH, qwen2.ARCH, qwen3.ARCH, gemma2.ARCH, gemma3.ARCH, phi3.ARCH)


def supported_names() -> str:
    return ", ".join(a.name for a in ARCHS)


def find_arch(config: dict) -> Arch:
    classes = config.get("architectures") or []
    for arch in ARCHS:
        if any(c in arch.hf_classes for c in classes):
            return arch
    for arch in ARCHS:  # no architectures list: fall back to model_type
        if not classes and config.get("model_type") == arch.name:
            return arch
    found = ", ".join(classes) or config.get("model_type") or "unknown"
    raise ConvertError(f"unsupported architecture {found}; supported: {supported_names()}")
