"""The bulk-packed GGUF header is byte for byte what gguf-py's GGUFWriter writes; bf16 -> f16 by table is the cast."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.checkpoints import tiny_random_checkpoint
from tuillm.convert import hf_to_gguf
from tuillm.convert.checkpoint import bf16_to_f16, bf16_to_f32
from tuillm.convert.gguf_write import data_end, header_bytes
from tuillm.convert.gguf_write_data import SharedFile, write_at

V = gguf.GGUFValueType
Q = gguf.GGMLQuantizationType


def _gguf_py_header(writer: gguf.GGUFWriter, path: Path) -> bytes:
    """What gguf-py itself writes for ``writer``'s metadata and tensor table (before the data's padding)."""
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path.read_bytes()


def _every_kind(writer: gguf.GGUFWriter) -> None:
    """Keys of every value type, and arrays of every element type, declared and inferred."""
    for kind, value in ((V.UINT8, 255), (V.INT8, -128), (V.UINT16, 65535), (V.INT16, -3), (V.UINT32, 2**32 - 1),
                        (V.INT32, -(2**31)), (V.FLOAT32, 0.1), (V.UINT64, 2**64 - 1), (V.INT64, -(2**63)),
                        (V.FLOAT64, 1e-300), (V.BOOL, True)):
        writer.add_key_value(f"t.scalar.{kind.name.lower()}", value, kind)
    writer.add_string("t.string", "naïve — 日本語 🙂")
    writer.add_key_value("t.string.empty", "", V.STRING)
    writer.add_array("t.tokens", ["<s>", "", "Ġthe", "日本", "🙂", "a" * 300, "\x00\n\t"])
    writer.add_array("t.tokens.bytes", [b"\xff\xfe", b"", bytearray(b"xy")])
    writer.add_array("t.types", [gguf.TokenType.NORMAL, gguf.TokenType.CONTROL, 3, True - 1])  # INT32 inferred
    writer.add_array("t.scores", [0.0, -1000.0, 1.5e-40, float("inf"), float("nan"), -0.0])  # FLOAT32 inferred
    writer.add_array("t.flags", [True, False, True])
    writer.add_array("t.one", [7])
    writer.add_array("t.raw", b"\x00\x01\xff")  # bytes: an UINT8 array
    writer.add_array("t.nested", [[1, 2], [3], ["x", "y"]])
    for kind in (V.UINT8, V.INT16, V.UINT32, V.UINT64, V.INT64, V.FLOAT64, V.BOOL):
        writer.add_key_value(f"t.declared.{kind.name.lower()}", [0, 1, 2, 1], V.ARRAY, sub_type=kind)
    writer.add_key_value("t.declared.string", ["a", "bc"], V.ARRAY, sub_type=V.STRING)


def test_metadata_and_tensor_table_match_gguf_py(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "ref.gguf", "llama")
    _every_kind(writer)
    shapes = [("token_embd.weight", (10, 64), Q.F16), ("blk.0.attn_norm.weight", (64,), Q.F32),
              ("blk.0.ffn_up.weight", (3, 5, 64), Q.Q8_0), ("output.weight", (7, 96), Q.BF16)]
    for name, shape, qtype in shapes:
        writer.add_tensor_info(name, shape, np.dtype(np.float32), hf_to_gguf.nbytes(shape, qtype), raw_dtype=qtype)
    ours, offsets = header_bytes(writer)
    theirs = _gguf_py_header(writer, tmp_path / "ref.gguf")
    assert ours == theirs + b"\0" * (-len(theirs) % 32)
    assert len(ours) % 32 == 0
    # The offsets are where GGUFReader finds each tensor's data in a file of that header.
    out = tmp_path / "ours.gguf"
    out.write_bytes(ours + b"\0" * (data_end(writer, len(ours)) - len(ours)))
    reader = gguf.GGUFReader(out)
    assert [int(t.data_offset) for t in reader.tensors] == offsets
    assert reader.fields["t.tokens"].contents() == ["<s>", "", "Ġthe", "日本", "🙂", "a" * 300, "\x00\n\t"]


@pytest.mark.parametrize(("key", "value", "sub_type"), [
    ("mixed", [1, "a"], None),
    ("mixed.bool", [1, True], None),  # get_type tells bool from int
    ("empty", [], None),
    ("too.big.u8", [1, 256], V.UINT8),
    ("negative.u32", [-1], V.UINT32),
    ("float.in.int", [1.5], V.INT32),
    ("f32.overflow", [1e39], V.FLOAT32),
    ("not.a.string", [b"a", 3], V.STRING),
])
def test_refuses_what_gguf_py_refuses(key: str, value: list, sub_type: gguf.GGUFValueType | None,
                                      tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "ref.gguf", "llama")
    writer.add_key_value(key, value, V.ARRAY, sub_type=sub_type)
    with pytest.raises((ValueError, OverflowError, struct.error, TypeError)):
        header_bytes(writer)
    with pytest.raises((ValueError, OverflowError, struct.error, TypeError)):
        _gguf_py_header(writer, tmp_path / "ref.gguf")


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_conversion_header_is_gguf_py_s(out_type: str, demo_ckpt: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The header of a real conversion (49k-token vocabulary, merges, chat template) is what gguf-py would write."""
    seen: list[gguf.GGUFWriter] = []

    def spy(writer: gguf.GGUFWriter) -> tuple[bytes, list[int]]:
        seen.append(writer)
        return header_bytes(writer)

    monkeypatch.setattr(hf_to_gguf, "header_bytes", spy)
    out = hf_to_gguf.convert_hf(demo_ckpt, tmp_path / "demo.gguf", out_type)
    (writer,) = seen
    theirs = _gguf_py_header(writer, tmp_path / "ref.gguf")
    theirs += b"\0" * (-len(theirs) % writer.data_alignment)
    data = out.read_bytes()
    assert data[:len(theirs)] == theirs
    assert len(writer.kv_data[0]["tokenizer.ggml.tokens"].value) == 49152
    assert len(data) == data_end(writer, len(theirs))


def test_bf16_to_f16_table_is_the_cast() -> None:
    """All 65536 bf16 patterns (NaNs, infinities, subnormals, values past float16's range included)."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    with np.errstate(over="ignore"):
        cast = bf16_to_f32(every).astype(np.float16)
    assert bf16_to_f16(every).view(np.uint16).tobytes() == cast.view(np.uint16).tobytes()
    assert bf16_to_f16(every.reshape(256, 256)).shape == (256, 256)


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_count_does_not_change_the_file(threads: int, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_random_checkpoint("llama", tmp_path / "ckpt", dtype="bfloat16")
    reference = hf_to_gguf.convert_hf(folder, tmp_path / "ref.gguf", "f16", threads=2)
    monkeypatch.setattr(hf_to_gguf, "UNIT_ELEMENTS", 4096)  # many pieces, finishing out of order
    out = hf_to_gguf.convert_hf(folder, tmp_path / "out.gguf", "f16", threads=threads)
    assert out.read_bytes() == reference.read_bytes()



def test_the_descriptor_outlives_every_piece(tmp_path: Path) -> None:
    """Closed by the last release, whoever it is: a piece still running after the opener let go (an interrupted
    clean-up) writes into the file it was given, not into a descriptor number reused since."""
    path = tmp_path / "out.part"
    path.write_bytes(b"\0" * 8)
    out = SharedFile(os.open(path, os.O_WRONLY))
    out.hold()  # a piece in flight
    out.release()  # the opener gives up
    write_at(out.fd, np.arange(1, 5, dtype=np.uint8), 2)
    out.release()  # the piece ends: now it is closed
    assert path.read_bytes() == b"\0\0\x01\x02\x03\x04\0\0"
    with pytest.raises(OSError):
        os.fstat(out.fd)
