"""The base of a run: an HF folder as it is; bad paths. (A GGUF dequantized into the cache: the demo, for real,
in tests/tui/cli/test_train.py's end-to-end test.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuillm.core.errors import ModelFileError
from tuillm.core.train.base import base_folder, pick_dtype


def test_hf_folder_is_used_as_is_and_bad_paths_say_why(tmp_path: Path) -> None:
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{}")
    assert base_folder(tmp_path / "ck") == tmp_path / "ck"
    with pytest.raises(ModelFileError, match="no config.json"):
        base_folder(tmp_path)
    (tmp_path / "notes.gguf").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a GGUF file or an HF checkpoint folder"):
        base_folder(tmp_path / "notes.gguf")


def test_dtype_choice() -> None:
    assert pick_dtype("cpu") == "float32" and pick_dtype("cpu", "bfloat16") == "bfloat16"
