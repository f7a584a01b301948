"""What this machine offers llama.cpp and training: RAM, cores, CPU features, GPU offload backend.

Training devices (CUDA/MPS) are detected only when asked, since that needs torch.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

# CPU flags that select llama.cpp's fast kernels, in the order we show them.
_X86_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
_ARM_FEATURES = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve", "fphp": "fp16"}


@dataclass(frozen=True)
class Hardware:
    total_ram: int
    available_ram: int
    physical_cores: int
    logical_cores: int
    machine: str
    cpu_features: tuple[str, ...]
    gpu_offload: bool
    gpu_backend: str | None  # "CUDA", "Metal", "Vulkan", ... or None for a CPU-only llama.cpp build

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_features"] = list(self.cpu_features)
        return data


def cpu_features(cpuinfo: str | None = None, machine: str | None = None) -> tuple[str, ...]:
    """Features from /proc/cpuinfo (Linux); Apple Silicon always has NEON. Unknown elsewhere: empty."""
    machine = (machine or platform.machine()).lower()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
            break
    if machine in ("x86_64", "amd64", "i686"):
        return tuple(f for f in _X86_FEATURES if f in flags)
    if machine in ("arm64", "aarch64"):
        found = [name for flag, name in _ARM_FEATURES.items() if flag in flags]
        if platform.system() == "Darwin" and "neon" not in found:
            found.insert(0, "neon")
        return tuple(found)
    return ()


@functools.cache
def llama_backend() -> tuple[bool, str | None]:
    """Whether the installed llama.cpp offloads to a GPU, and through which backend."""
    try:
        import llama_cpp
    except Exception:  # a broken build must not take the app down; it shows as "no offload"
        return False, None
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    if not offload:
        return False, None
    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    for backend in ("CUDA", "Metal", "ROCm", "HIP", "Vulkan", "SYCL", "OpenCL", "CANN", "MUSA"):
        if backend.upper() in text.upper():
            return True, backend
    return True, "GPU"


def detect() -> Hardware:
    vm = psutil.virtual_memory()
    offload, backend = llama_backend()
    return Hardware(
        total_ram=int(vm.total),
        available_ram=int(vm.available),
        physical_cores=psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        logical_cores=psutil.cpu_count() or 1,
        machine=platform.machine(),
        cpu_features=cpu_features(),
        gpu_offload=offload,
        gpu_backend=backend,
    )


def available_ram() -> int:
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Memory:
    """System RAM now: what can still be had (psutil's "available": free plus reclaimable cache) and the total."""

    available: int
    total: int


MemoryProbe = Callable[[], Memory]


def read_memory() -> Memory:
    """The memory guard's probe (core.models.guard); tests and front ends may pass their own."""
    vm = psutil.virtual_memory()
    return Memory(available=int(vm.available), total=int(vm.total))


def training_device() -> str:
    """"cuda", "mps" or "cpu": imports torch, so call it only when about to train."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
