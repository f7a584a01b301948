"""Test helper: copy a GGUF's metadata and tensors into a new file with some metadata keys replaced."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def copy_gguf(src: Path, dst: Path, replace: Mapping[str, str], *, drop_tensor: str | None = None,
              remove: tuple[str, ...] = ()) -> Path:
    """Rewrite ``src`` as ``dst`` with the string metadata in ``replace`` set and the keys in ``remove`` left out
    (tensors copied byte for byte, except ``drop_tensor``, left out to make a file llama.cpp refuses)."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    pending = dict(replace)
    for field in reader.fields.values():
        # GGUFWriter writes the architecture and the virtual GGUF.* fields itself.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.") or field.name in remove:
            continue
        if field.name in pending:
            writer.add_string(field.name, pending.pop(field.name))
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    for key, value in pending.items():
        writer.add_string(key, value)
    tensors = [t for t in reader.tensors if t.name != drop_tensor]
    for tensor in tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return dst
