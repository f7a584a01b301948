from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from tuillm.core.llama.options import MAX_THREADS
from tuillm.core.models.hardware import (
    Hardware,
    cpu_features,
    cpu_list,
    decode_threads,
    default_threads,
    detect,
    performance_cores,
)


def test_detect_reports_this_machine() -> None:
    hw = detect()
    assert hw.total_ram == psutil.virtual_memory().total
    assert 0 < hw.available_ram <= hw.total_ram
    assert 1 <= hw.physical_cores <= hw.logical_cores
    # The llama.cpp built for the tests has no GPU backend, or names one.
    assert hw.gpu_offload == (hw.gpu_backend is not None)
    assert hw.to_json()["cpu_features"] == list(hw.cpu_features)


def test_cpu_features_from_cpuinfo() -> None:
    x86 = "processor\t: 0\nflags\t\t: fpu sse avx avx2 fma f16c avx512f\n"
    assert cpu_features(x86, "x86_64") == ("avx", "avx2", "fma", "f16c", "avx512f")
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n"
    assert cpu_features(arm, "aarch64")[:3] == ("neon", "dotprod", "i8mm")
    assert cpu_features("", "riscv64") == ()


def test_decode_threads_are_the_physical_performance_cores_within_the_usable_cpus() -> None:
    # A 2-core machine without SMT: both cores (llama-cpp-python's own default, half the logical CPUs, is one).
    assert decode_threads(physical=2, performance=None, usable=2) == 2
    assert decode_threads(physical=8, performance=None, usable=16) == 8  # SMT: one thread per core
    assert decode_threads(physical=14, performance=6, usable=20) == 6  # hybrid: the performance cores only
    assert decode_threads(physical=8, performance=None, usable=3) == 3  # taskset / a container's cpuset
    assert decode_threads(physical=None, performance=None, usable=4) == 4  # unknown cores: what may run
    assert decode_threads(physical=0, performance=0, usable=None) == 1
    assert decode_threads(physical=4096, performance=None, usable=None) == MAX_THREADS  # llama.cpp's bound


def test_the_machine_default_is_what_the_hardware_reading_gives() -> None:
    hw = detect()
    assert 1 <= default_threads() == hw.default_threads <= hw.physical_cores
    fixed = Hardware(total_ram=1, available_ram=1, physical_cores=8, logical_cores=16, machine="x86_64",
                     cpu_features=(), gpu_offload=False, gpu_backend=None)
    assert fixed.default_threads == 8  # usable unknown: all logical CPUs
    assert replace(fixed, performance_cores=6, usable_cpus=4).default_threads == 4


def test_cpu_list() -> None:
    assert cpu_list("0-2,8\n") == [0, 1, 2, 8]
    assert cpu_list("") == [] and cpu_list("x,3-,5") == [5]


def _cpu(root: Path, n: int, package: int, core: int) -> None:
    topology = root / "system" / "cpu" / f"cpu{n}" / "topology"
    topology.mkdir(parents=True)
    (topology / "physical_package_id").write_text(f"{package}\n")
    (topology / "core_id").write_text(f"{core}\n")


@pytest.mark.skipif(platform.system() == "Darwin", reason="macOS reports performance cores through sysctl")
def test_performance_cores_of_a_hybrid_intel_cpu_from_sysfs(tmp_path: Path) -> None:
    # 2 performance cores with 2 hyperthreads each (CPUs 0-3), 2 efficiency cores (4, 5): Linux's layout.
    for n, core in enumerate((0, 0, 4, 4, 8, 9)):
        _cpu(tmp_path, n, 0, core)
    sys_cpu = tmp_path / "system" / "cpu"
    assert performance_cores(sys_cpu) is None  # no cpu_core PMU: one kind of core
    (tmp_path / "cpu_core").mkdir()
    (tmp_path / "cpu_core" / "cpus").write_text("0-3\n")
    assert performance_cores(sys_cpu) == 2
