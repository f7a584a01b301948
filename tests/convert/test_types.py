"""The one registry of output types: its names reach gguf's and llama.cpp's enums, the writers follow it, and every
front end (the CLI's --type of convert, quantize and merge, merge itself) takes exactly its types."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from tuillm.convert.errors import ConvertError
from tuillm.convert.lora_to_gguf import ADAPTER_TYPES
from tuillm.convert.tensors import file_type, ggml_type
from tuillm.convert.types import (
    DIRECT_TYPE_NAMES,
    MERGE_TYPE_NAMES,
    OUTPUT_TYPES,
    TYPE_NAMES,
    UNQUANTIZED_TYPE_NAMES,
    check_type,
)
from tuillm.core.errors import TuillmError
from tuillm.tui.cli import build_parser


def test_every_type_reaches_gguf_and_llama_cpp() -> None:
    import llama_cpp

    for name, t in OUTPUT_TYPES.items():
        assert ggml_type(name) == gguf.GGMLQuantizationType[t.ggml]
        assert int(file_type(name)) == getattr(llama_cpp, f"LLAMA_FTYPE_{t.ftype}")
        assert 1 < t.bpw <= 32 and t.note
    assert set(DIRECT_TYPE_NAMES) == {"f32", "f16", "bf16", "q8_0"}  # what hf_to_gguf writes tensor by tensor
    assert set(UNQUANTIZED_TYPE_NAMES) == {"f32", "f16", "bf16"} == set(ADAPTER_TYPES)
    assert set(MERGE_TYPE_NAMES) <= set(TYPE_NAMES) and len(set(TYPE_NAMES)) == len(TYPE_NAMES)


def test_check_type() -> None:
    assert check_type(" Q4_K_M ") == "q4_k_m"
    with pytest.raises(ConvertError, match="unknown output type 'q9'; choose one of q4_k_m, q8_0"):
        check_type("q9")


def _type_option(command: str) -> argparse.Action:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if "--type" in a.option_strings)


@pytest.mark.parametrize("command", ["convert", "quantize"])
def test_cli_type_lists_take_the_registry(command: str) -> None:
    option = _type_option(command)
    for name in TYPE_NAMES:
        assert option.type(name.upper()) == [name]
    assert option.type(",".join(TYPE_NAMES)) == list(TYPE_NAMES)
    with pytest.raises(argparse.ArgumentTypeError, match=f"choose from {', '.join(TYPE_NAMES)}"):
        option.type("q9")


def test_merge_takes_exactly_the_registry(tmp_path: Path) -> None:
    from tuillm.core.train.merge import merge

    assert tuple(_type_option("merge").choices) == TYPE_NAMES
    assert tuple(_type_option("export-lora").choices) == UNQUANTIZED_TYPE_NAMES
    # merge checks the type before any heavy work: an unknown one is refused with the registry's list.
    with pytest.raises(TuillmError, match=f"choose one of {', '.join(TYPE_NAMES)}"):
        merge(tmp_path / "base", tmp_path / "adapter", tmp_path / "out.gguf", "q9")


def test_the_registry_is_light() -> None:
    """--help lists the types without importing gguf or numpy."""
    code = "import sys, tuillm.convert.types; print('gguf' in sys.modules or 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
