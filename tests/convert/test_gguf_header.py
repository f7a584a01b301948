from __future__ import annotations

import struct
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ggufs import write_tiny_gguf
from tuillm.convert.gguf_header import GGUFHeaderError, SkippedArray, read_gguf_header


def test_matches_ggufs_own_reader(demo_gguf: Path) -> None:
    ours = read_gguf_header(demo_gguf)
    theirs = gguf.GGUFReader(demo_gguf)
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(ours.tensors, theirs.tensors, strict=True):
        assert a.offset == b.data_offset
        assert a.n_bytes == b.n_bytes
        assert a.n_elements == b.n_elements
        assert a.type_name == b.tensor_type.name
    assert ours.fields["general.architecture"] == "llama"
    assert ours.fields["llama.block_count"] == 30
    assert theirs.fields["tokenizer.chat_template"].contents() == ours.fields["tokenizer.chat_template"]
    tokens = ours.fields["tokenizer.ggml.tokens"]
    assert isinstance(tokens, SkippedArray) and len(tokens) == 49152


def test_short_arrays_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_array("llama.attention.head_count_kv", [2, 2, 4])
    w.add_array("some.strings", ["a", "bé"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    fields = read_gguf_header(path).fields
    assert fields["llama.attention.head_count_kv"] == [2, 2, 4]
    assert fields["some.strings"] == ["a", "bé"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=20_000), flip=st.integers(min_value=8, max_value=4000),
       byte=st.integers(min_value=0, max_value=255))
def test_damaged_headers_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, cut: int, flip: int,
                                      byte: int) -> None:
    """Truncated or corrupted files raise GGUFHeaderError only: never an IndexError, MemoryError or a hang."""
    folder = tmp_path_factory.mktemp("fuzz")
    good = write_tiny_gguf(folder / "good.gguf").read_bytes()
    data = bytearray(good[:cut] if cut < len(good) else good)
    if flip < len(data):
        data[flip] = byte
    bad = folder / "bad.gguf"
    bad.write_bytes(bytes(data))
    try:
        read_gguf_header(bad)
    except GGUFHeaderError:
        pass


def test_version_and_magic(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<I", 1) + b"\0" * 40)
    with pytest.raises(GGUFHeaderError, match="unsupported GGUF version 1"):
        read_gguf_header(p)
    p.write_bytes(b"GGUF" + struct.pack(">I", 3) + b"\0" * 40)
    with pytest.raises(GGUFHeaderError, match="big-endian"):
        read_gguf_header(p)
    p.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(GGUFHeaderError, match="bad magic"):
        read_gguf_header(p)
