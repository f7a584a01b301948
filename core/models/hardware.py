"""What this machine offers llama.cpp and training: RAM, cores, CPU features, GPU offload backend.

Training devices (CUDA/MPS) are detected only when asked, since that needs torch.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from tuillm.convert.child import usable_cpus  # the one reading of the CPUs we may use: also our tools'

# CPU flags that select llama.cpp's fast kernels, in the order we show them.
_X86_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
# Native bf16 matrix products on a CPU (PyTorch's oneDNN kernels use them): where bf16 training beats float32.
_BF16_FEATURES = ("avx512_bf16", "amx_bf16")
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
    performance_cores: int | None = None  # physical performance cores where the CPU has two kinds
    usable_cpus: int | None = None  # logical CPUs this process may run on (None: all)

    @property
    def default_threads(self) -> int:
        """The decode threads when none are set, on this machine (``decode_threads``)."""
        return decode_threads(self.physical_cores, self.performance_cores, self.usable_cpus or self.logical_cores)

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


def cpu_bf16(features: tuple[str, ...] | None = None) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX), about 3x its float32 rate;
    elsewhere PyTorch emulates bf16 and it is slower than float32."""
    return any(f in _BF16_FEATURES for f in (cpu_features() if features is None else features))


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
        physical_cores=_physical_cores(),
        logical_cores=psutil.cpu_count() or 1,
        machine=platform.machine(),
        cpu_features=cpu_features(),
        gpu_offload=offload,
        gpu_backend=backend,
        performance_cores=performance_cores(),
        usable_cpus=usable_cpus(),
    )


def _physical_cores() -> int:
    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def decode_threads(physical: int | None, performance: int | None, usable: int | None) -> int:
    """The thread count that decodes fastest by default, as llama.cpp's own tools choose it.

    Decoding is bound by memory bandwidth and the math units of each core: a second hyperthread on a core, or an
    efficiency core that the performance cores then wait for, slows it. So: the physical performance cores
    (``performance``, where the CPU has two kinds), else the physical cores, never more than the logical CPUs this
    process may run on (``usable``: taskset, a container's cpuset). Unknown readings (None, 0) are skipped.
    """
    from tuillm.core.llama.options import MAX_THREADS

    cores = performance or physical or usable or 1
    if usable:
        cores = min(cores, usable)
    return max(1, min(cores, MAX_THREADS))


def cpu_list(text: str) -> list[int]:
    """The CPUs a sysfs CPU list names: "0-2,8" is [0, 1, 2, 8]; what is not a number is skipped."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        first, dash, last = (p.strip() for p in part.partition("-"))
        if first.isdigit() and (not dash or last.isdigit()):
            cpus.extend(range(int(first), int(last if dash else first) + 1))
    return cpus


def _linux_performance_cores(sys_cpu: Path) -> int | None:
    """Physical cores among the logical CPUs that Linux lists for a hybrid Intel CPU's performance cores."""
    try:
        listed = cpu_list((sys_cpu.parent.parent / "cpu_core" / "cpus").read_text())  # /sys/devices/cpu_core
    except OSError:
        return None  # not a hybrid CPU (or not Linux)
    cores: set[tuple[str, str]] = set()
    for cpu in listed:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:  # a core's hyperthreads share its (package, core) ids
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology: count the CPU on its own
    return len(cores) or None


def performance_cores(sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int | None:
    """Physical performance cores on a CPU with two kinds (Intel hybrid on Linux, Apple Silicon); else None."""
    if platform.system() != "Darwin":
        return _linux_performance_cores(sys_cpu)
    try:
        libc = ctypes.CDLL(None)
        value, size = ctypes.c_int(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_int))
        if libc.sysctlbyname(b"hw.perflevel0.physicalcpu", ctypes.byref(value), ctypes.byref(size), None, 0):
            return None
        return value.value or None
    except (OSError, AttributeError):
        return None


@functools.cache
def default_threads() -> int:
    """Decode threads when none are set (``--threads``, [load] threads, a model's own): see ``decode_threads``."""
    return decode_threads(_physical_cores(), performance_cores(), usable_cpus())


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
