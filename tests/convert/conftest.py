"""Fixtures for the converter tests: the demo-derived checkpoint and its f16 GGUF, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint


@pytest.fixture(scope="session")
def demo_ckpt() -> Path:
    return demo_hf_checkpoint()


@pytest.fixture(scope="session")
def demo_f16(demo_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuillm.convert.hf_to_gguf import convert_hf

    return convert_hf(demo_ckpt, tmp_path_factory.mktemp("demo-f16") / "demo-f16.gguf", "f16")
