from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
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
    w.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))  # a file without tensors is refused
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


def _no_tensors(good: Path, bad: Path) -> Path:
    """A copy of ``good`` whose header says tensor_count = 0 (bytes 8..16), the rest as it was."""
    data = bytearray(good.read_bytes())
    data[8:16] = bytes(8)
    bad.write_bytes(bytes(data))
    return bad


def test_a_gguf_without_tensors_is_refused(tmp_path: Path) -> None:
    bad = _no_tensors(write_tiny_gguf(tmp_path / "good.gguf"), tmp_path / "bad.gguf")
    with pytest.raises(GGUFHeaderError) as err:
        read_gguf_header(bad)
    assert str(err.value) == "holds no tensors (not a model)"


@pytest.mark.parametrize("command", [["info"], ["quantize", "-o", "x.gguf", "--type", "q4_0", "-q"]])
def test_info_and_quantize_refuse_a_gguf_without_tensors(command: list[str], demo_gguf: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each once said yes (info: "params 0 ... fits"; quantize wrote a GGUF of 0 tensors); only chat refused."""
    from tuillm.tui.cli import main

    bad = _no_tensors(demo_gguf, tmp_path / "bad.gguf")
    argv = [command[0], str(bad), *[str(tmp_path / a) if a.endswith(".gguf") else a for a in command[1:]]]
    assert main(argv) == 1
    assert capsys.readouterr().err == f"tuillm: {bad}: holds no tensors (not a model)\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bad.gguf"]


def test_a_lora_adapter_gguf_is_still_read(tmp_path: Path) -> None:
    """Adapters go through the same reader: theirs have tensors, so they pass."""
    from tuillm.core.models.metadata import read_lora_info

    path = tmp_path / "adapter.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_tensor("blk.0.attn_q.weight.lora_a", np.ones((4, 64), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight.lora_b", np.ones((64, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert len(read_gguf_header(path).tensors) == 2
    assert read_lora_info(path).kind == "adapter"
