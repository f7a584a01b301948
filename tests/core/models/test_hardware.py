from __future__ import annotations

import psutil

from tuillm.core.models.hardware import cpu_features, detect


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
