"""Property tests of the readers of untrusted bytes: for any input, a result or a one-line ConvertError/TuillmError,
never another exception, within a time bound (hypothesis' deadline)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import gguf_bytes as gb
from tuillm.convert.checkpoint import read_json_object
from tuillm.convert.errors import ConvertError
from tuillm.convert.gguf_checks import ARCH_RULES, GENERAL_RULES
from tuillm.convert.gguf_header import read_gguf_header
from tuillm.convert.hparams import check_config
from tuillm.convert.safetensors_header import DTYPE_BYTES, read_header
from tuillm.core.errors import TuillmError
from tuillm.core.models.metadata import ModelInfo, read_info

SETTINGS = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = [*GENERAL_RULES, *(f"llama.{k}" for k in ARCH_RULES), "x.other"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


def _value(vtype: int) -> st.SearchStrategy[object]:
    if vtype == gb.STRING:
        return st.binary(max_size=12)
    if vtype in (gb.F32, gb.F64):
        return st.floats(width=32 if vtype == gb.F32 else 64)
    if vtype == gb.BOOL:
        return st.booleans()
    size = struct.calcsize(gb._FORMATS[vtype]) * 8
    signed = vtype in (gb.I8, gb.I16, gb.I32, gb.I64)
    return st.integers(-(2 ** (size - 1)) if signed else 0, 2 ** (size - 1) - 1 if signed else 2**size - 1)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A metadata record of any known key with a value of any type (arrays: of any item type, nesting included)."""
    key = draw(st.sampled_from(KEYS))
    vtype = draw(st.sampled_from([*gb._FORMATS, gb.STRING, gb.ARRAY]))
    if vtype != gb.ARRAY:
        return gb.kv(key, vtype, draw(_value(vtype)))
    item = draw(st.sampled_from([*gb._FORMATS, gb.STRING, gb.ARRAY]))
    if item == gb.ARRAY:
        return gb.gguf_string(key) + struct.pack("<I", gb.ARRAY) + gb.nested_array(draw(st.integers(2, 3000)))
    return gb.kv(key, gb.ARRAY, (item, draw(st.lists(_value(item), max_size=5))))


def _reads(path: Path, reader) -> None:  # noqa: ANN001 - any reader of one path
    try:
        reader(path)
    except (ConvertError, TuillmError) as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(st.lists(records(), max_size=8), st.sampled_from(["llama", "x"]))
def test_gguf_metadata_of_any_type_and_value(tmp_path: Path, recs: list[bytes], arch: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gb.header([gb.kv("general.architecture", gb.STRING, arch), *recs]))
    _reads(path, read_gguf_header)
    _reads(path, read_info)


@SETTINGS
@given(st.binary(max_size=400))
def test_gguf_any_bytes_after_the_magic(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + tail)
    _reads(path, read_gguf_header)


@st.composite
def safetensors_headers(draw: st.DrawFn) -> bytes:
    entries = draw(st.dictionaries(st.text(max_size=6), st.fixed_dictionaries({
        "dtype": st.sampled_from([*DTYPE_BYTES, "Q9"]) | json_values,
        "shape": st.lists(st.integers(-2, 9), max_size=3) | json_values,
        "data_offsets": st.lists(st.integers(-2, 300), min_size=2, max_size=2) | json_values,
    }) | json_values, max_size=4))
    return json.dumps(entries).encode()


@SETTINGS
@given(safetensors_headers() | st.binary(max_size=200), st.integers(0, 300))
def test_safetensors_headers_of_any_shape(tmp_path: Path, header: bytes, data: int) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(data))
    try:
        entries, _ = read_header(path)
    except ConvertError as exc:
        assert "\n" not in str(exc)
        return
    size = path.stat().st_size
    for e in entries.values():  # what comes back is consistent: in the file, as long as dtype x shape
        assert 0 <= e.begin <= e.end <= size and e.n_bytes == e.n_elements * DTYPE_BYTES[e.dtype]


@SETTINGS
@given(st.dictionaries(st.sampled_from(["hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                                        "num_hidden_layers", "rope_theta", "rope_scaling", "rope_parameters",
                                        "text_config", "architectures", "rms_norm_eps", "max_position_embeddings"]),
                       json_values, max_size=6))
def test_config_values_of_any_type(config: dict) -> None:
    try:
        check_config(config)
    except ConvertError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(st.binary(max_size=200) | st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n))
def test_json_files_of_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(data)
    _reads(path, read_json_object)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["path", "params", "layer_bytes", "n_head", "name", "chat_template"]),
                       json_values, max_size=6))
def test_cached_model_info_of_any_shape(data: dict) -> None:
    """A catalog cache entry: a ModelInfo, or TypeError/KeyError (the catalog then reads the file again)."""
    with pytest.raises((TypeError, KeyError)):
        ModelInfo.from_json(data)
