"""LoRA adapter -> GGUF, two ways: merged into the base (``merge``) or as a GGUF adapter (``export_lora``).

merge: PEFT's ``merge_and_unload`` into a temporary HF folder beside the output, converted to any output type by
the one conversion orchestrator (``convert_many`` through ``convert_checkpoint``: the same steps, intermediate and
cancel as the Convert pane), then the folder is removed (also on failure or cancel).
An adapter trained over a 4-bit base (QLoRA, ``training.json``'s ``quant``) is merged into that base dequantized
on CUDA (``qlora_base``), into the full-precision base elsewhere.
export_lora: convert/lora_to_gguf.
Both check first that the output destroys nothing (not the base, the adapter or a file inside them; an existing
file only with ``force``: ``tuillm.convert.output.check_output``) and that the adapter fits the base.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from tuillm.convert.checkpoint import open_checkpoint
from tuillm.convert.errors import ConvertError
from tuillm.convert.lora_to_gguf import Adapter, check_finite, check_fits, lora_to_gguf, open_adapter
from tuillm.convert.output import check_output, describe_os_error, remove_stale, temp_name
from tuillm.convert.types import CONVERT_DEFAULT, MERGE_DEFAULT, check_type
from tuillm.core.errors import TuillmError, first_line
from tuillm.core.events import Cancelled, Emit, Log, Progress, cancellable, ignore
from tuillm.core.text import shown
from tuillm.core.train.checkpoints import base_model_type, training_record


def utf8_path(path: Path) -> None:
    """safetensors and tokenizers open UTF-8 paths only, and the adapter's folder name is GGUF text: a name of other
    bytes crashed the merge half-way; refused in one line before any work."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        raise TuillmError(f"{shown(str(path))}: the name is not UTF-8, which the model libraries cannot open; "
                          "rename it") from None


def _adapter(adapter_dir: Path) -> Adapter:
    """The adapter read and checked (its config and its tensors' header): before a base is dequantized for it."""
    utf8_path(adapter_dir)
    try:
        adapter = open_adapter(adapter_dir)
        check_finite(adapter)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    return adapter


def _check(adapter: Adapter, base: Path) -> None:
    try:
        check_fits(adapter, open_checkpoint(base))
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    check_trained_on(adapter.folder, base)


def check_trained_on(adapter_dir: Path, base: Path) -> None:
    """An adapter of ours (its training.json names the base's architecture) is refused for a base of another one,
    even where every layer has the same shape: the result would be neither model."""
    trained, now = training_record(adapter_dir).get("base_model_type"), base_model_type(base)
    if isinstance(trained, str) and now is not None and trained != now:
        raise TuillmError(f"{adapter_dir} was trained on a {shown(trained, 40)} model, and {base} is a {now} model; "
                          "give the base it was trained on")


def check_merge_output(out: Path, inputs: list[Path], force: bool) -> None:
    """The output is neither an input nor inside one, replaces an existing file only with ``force``, and its folder
    takes new files: all before a GGUF base is dequantized for it (minutes for a big one)."""
    try:
        check_output(out, inputs, force=force)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    probe = temp_name(out, "probe")
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise TuillmError(describe_os_error(exc, out)) from None


def export_lora(adapter_dir: Path, base: Path, out: Path, out_type: str = CONVERT_DEFAULT, *,
                emit: Emit = ignore, cancel: threading.Event | None = None, force: bool = False) -> Path:
    """Write a GGUF LoRA adapter for the base (an HF folder or GGUF; a GGUF is dequantized to read its shapes)."""
    from tuillm.core.train.base import base_folder

    emit = cancellable(emit, cancel)  # the pane's "Stop the export?" stopped nothing: the file was written whole
    check_merge_output(Path(out), [Path(adapter_dir), Path(base)], force)
    _adapter(Path(adapter_dir))  # a bad adapter refused before a GGUF base is dequantized for it
    folder = base_folder(Path(base), emit=emit)
    check_trained_on(Path(adapter_dir), folder)

    def progress(done: int, total: int) -> None:
        emit(Progress("export", done, total, f"{done}/{total} LoRA pairs"))

    try:
        path = lora_to_gguf(Path(adapter_dir), folder, Path(out), out_type, progress=progress)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    emit(Log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)"))
    return path


def merge(base: Path, adapter_dir: Path, out: Path, out_type: str = MERGE_DEFAULT, *, emit: Emit = ignore,
          cancel: threading.Event | None = None, threads: int | None = None, force: bool = False) -> Path:
    """Merge the adapter into the base and write a GGUF of ``out_type``."""
    from tuillm.core.conversion.job import convert_checkpoint
    from tuillm.core.train.base import base_folder, load_tokenizer

    emit = cancellable(emit, cancel)  # also while a GGUF base is dequantized, which takes no cancel flag
    out = Path(out)
    try:
        out_type = check_type(out_type)
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    if out.is_dir():
        raise TuillmError(f"{out}: is a folder (give the output file name)")
    if not out.parent.is_dir():
        raise TuillmError(f"{out.parent}: {'not a folder' if out.parent.exists() else 'no such folder'}")
    check_merge_output(out, [Path(base), Path(adapter_dir)], force)
    utf8_path(out)  # the merged checkpoint's folder is named after it
    adapter = _adapter(Path(adapter_dir))
    folder = base_folder(Path(base), emit=emit)
    utf8_path(folder)
    _check(adapter, folder)
    # The merged checkpoint is as big as the base: beside the output, where the user has chosen to put big files;
    # named like every temporary of the output, so the next run removes it if this one is killed.
    remove_stale(out)
    work = temp_name(out, "merge")
    try:
        work.mkdir()
    except OSError as exc:
        raise TuillmError(describe_os_error(exc, out)) from None
    try:
        emit(Progress("merge", 0, 1, "loading the base and the adapter (transformers + peft)"))
        _merge_to_folder(folder, Path(adapter_dir), work, out_type, emit)
        load_tokenizer(folder).save_pretrained(str(work))
        emit(Progress("merge", 1, 1, "merged"))
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        return convert_checkpoint(work, out, out_type, emit=emit, cancel=cancel, threads=threads, force=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _merge_to_folder(base: Path, adapter_dir: Path, out: Path, out_type: str = MERGE_DEFAULT,
                     emit: Emit = ignore) -> None:
    import torch
    from peft import PeftModel

    from tuillm.core.train.base import load_model, quiet_transformers

    quiet_transformers()
    # Merging in float32 keeps the small LoRA delta from vanishing in bf16 rounding; saved as _save_dtype says.
    model = qlora_base(base, adapter_dir, emit)
    if model is None:  # the training's loader: a base whose weights do not fit its config is refused in one line
        model = load_model(base, "cpu", "float32")
    try:  # the adapter's config was checked (open_adapter); what peft still refuses is one line too
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError, IndexError, ImportError) as exc:
        raise TuillmError(f"{adapter_dir}: peft cannot load it onto {base} ({first_line(exc)})") from None
    merged = model.merge_and_unload()
    if not all(bool(torch.isfinite(p).all()) for p in merged.parameters()):  # alpha / r too large for the weights
        raise TuillmError(f"{adapter_dir}: merged into {base}, some weights are not finite (inf or NaN): the "
                          "adapter's scale (lora_alpha / r) is too large")
    merged.to(_save_dtype(merged, base, out_type)).save_pretrained(str(out))


def _save_dtype(model, base: Path, out_type: str):  # noqa: ANN001, ANN202 - torch types, imported lazily
    """The dtype of the temporary merged checkpoint: 2 bytes a weight unless the output needs more.

    The converter rounds to f16 anyway for an f16 output and for llama.cpp's quantizer (its intermediate file is
    f16 for a checkpoint without bf16 tensors), so f16 gives the very output the float32 merge would, at half
    the disk. q8_0 is encoded from the checkpoint's values: a float32 base keeps float32 for it; from a
    bf16/f16 base, f16 (3 bits finer than bf16) holds the merged values closer than the base's own dtype.
    bf16 instead of f16 only where a weight is beyond f16's range.
    """
    import torch

    if out_type == "f32" or (out_type == "q8_0" and _is_f32(base)):
        return torch.float32
    if out_type == "bf16":
        return torch.bfloat16
    biggest = max(float(p.detach().abs().max()) for p in model.parameters())
    return torch.float16 if biggest < float(torch.finfo(torch.float16).max) else torch.bfloat16


def _is_f32(base: Path) -> bool:
    return any(t.dtype == "F32" for t in open_checkpoint(base).tensors.values() if len(t.shape) >= 2)


def qlora_base(base: Path, adapter_dir: Path, emit: Emit = ignore):  # noqa: ANN201 - a transformers model or None
    """For an adapter trained over the base in 4-bit NF4 (QLoRA): the base quantized the same way and dequantized to
    float32, the very weights the adapter learned against; needs CUDA and bitsandbytes (run on an H200 by
    tools/cuda_runs.py, never in CI). Elsewhere None, and the caller merges into the full-precision base, as most
    QLoRA merges do (it differs from the trained-against weights by NF4's rounding). None too for any other
    adapter."""
    import importlib.util

    import torch

    from tuillm.core.train.base import load_model

    # An adapter from elsewhere (or a record that says nothing) has no record of a quantized base.
    if training_record(adapter_dir).get("quant", "none") != "4bit":
        return None
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        emit(Log("the adapter was trained over the base in 4-bit NF4 (QLoRA); without CUDA and bitsandbytes to "
                 "rebuild that, it is merged into the full-precision base", "warning"))
        return None
    emit(Log("the adapter was trained over the base in 4-bit NF4 (QLoRA): merging into that base, dequantized"))
    model = load_model(base, "cuda", "bfloat16", "4bit").dequantize()
    return model.to("cpu", torch.float32)
