"""The base model of a LoRA run or a merge, as an HF checkpoint folder.

A GGUF (the demo included) is dequantized once with transformers into a cached HF folder under
``cache_dir()/dequantized``, keyed by the file's size and mtime; an HF folder is used as it is. torch and
transformers are imported only inside the functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

from tuillm.convert.output import remove_stale, temp_name
from tuillm.core.errors import ModelFileError, TuillmError, first_line
from tuillm.core.events import Emit, Log, Progress, ignore
from tuillm.core.paths import cache_dir


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


def dequantized_folder(gguf_path: Path) -> Path:
    st = gguf_path.stat()
    return cache_dir() / "dequantized" / f"{gguf_path.stem}-{st.st_size}-{int(st.st_mtime)}"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def base_folder(path: Path, *, emit: Emit = ignore) -> Path:
    """``path`` as an HF checkpoint folder: itself, or the cached dequantized copy of a GGUF (built if needed)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelFileError(path, "not an HF checkpoint folder (no config.json)")
        check_json_files(path)
        return path
    if not is_gguf(path):
        raise ModelFileError(path, "not a GGUF file or an HF checkpoint folder")
    target = dequantized_folder(path)
    if _usable_copy(path, target, emit):
        emit(Log(f"using the dequantized copy of {path.name} in {target} "
                 f"({folder_size(target) / 1e9:.2f} GB on disk)"))
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from tuillm.core.models.metadata import read_info

    try:
        need = f", about {read_info(path).params * 2 / 1e9:.1f} GB on disk"  # bf16: 2 bytes a weight
    except TuillmError:
        need = ""
    emit(Log(f"{path.name} is a GGUF: dequantizing it once into an HF checkpoint for training (transformers)"
             f"{need}, cached in {target}"))
    emit(Progress("dequantize", 0, 0, f"{path.name} -> HF checkpoint"))
    # Built beside the target and renamed: an interrupted build never leaves a half folder that looks complete,
    # and one killed outright is removed by the next build (its pid is in the name).
    remove_stale(target)
    work = temp_name(target, "build")
    work.mkdir()
    try:
        dequantize_gguf(path, work)
        if not same_end_token(path, work):
            import transformers

            raise ModelFileError(path, f"transformers {transformers.__version__} rebuilds its tokenizer with another "
                                 "end token than the file's: upgrade transformers (5.18 or later)")
        try:
            work.rename(target)
        except OSError:  # a parallel build finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(Progress("dequantize", 1, 1, "done"))
    emit(Log(f"dequantized {path.name} into {target} ({folder_size(target) / 1e9:.2f} GB on disk; "
             "delete it to reclaim the space)"))
    return target


def _usable_copy(path: Path, target: Path, emit: Emit) -> bool:
    """Whether the cached copy of ``path`` is complete and its tokenizer ends text as the GGUF does; one made by a
    transformers that rebuilt the tokenizer wrongly (5.17 and older) is removed, to be made again."""
    if not ((target / "config.json").is_file() and any(target.glob("*.safetensors"))):
        return False
    if same_end_token(path, target):
        return True
    emit(Log(f"the dequantized copy of {path.name} has another end token than the file (an older transformers "
             "made it): making it again", "warning"))
    shutil.rmtree(target, ignore_errors=True)
    return False


def same_end_token(gguf_path: Path, folder: Path) -> bool:
    """Whether the tokenizer saved in ``folder`` ends text with the GGUF's end token (``tokenizer.ggml.eos_token_id``).
    transformers rebuilds the tokenizer from the GGUF's vocabulary, and 5.17 got it wrong (the demo's end token
    ``<|im_start|>``): training would teach that token as the end of a document, and merges refuse the tokenizer.
    True where either side does not say."""
    from tuillm.core.models.metadata import checked_gguf_header

    eos_id = checked_gguf_header(gguf_path).fields.get("tokenizer.ggml.eos_token_id")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokens = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # a cached copy changed by hand: not this check's concern
        return True
    eos = config.get("eos_token") if isinstance(config, dict) else None
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if not isinstance(eos_id, int) or not isinstance(eos, str) or not isinstance(tokens, dict):
        return True
    ids = {t.get("content"): t.get("id") for t in tokens.get("added_tokens") or [] if isinstance(t, dict)}
    model = tokens.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    found = ids.get(eos, vocab.get(eos) if isinstance(vocab, dict) else None)
    return found is None or found == eos_id


def dequantize_gguf(gguf_path: Path, out: Path) -> None:
    """Write ``gguf_path`` as an HF checkpoint folder (bf16 safetensors + tokenizer) into ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        # transformers' GGUF reader draws a tqdm bar of its own on stderr, which its progress setting does not
        # reach: in `tuillm train -q` (and beside our own progress line) it is noise. Errors come as exceptions.
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                          dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ModelFileError(gguf_path, f"transformers cannot dequantize it ({first_line(exc)})") from None
    # transformers marks a gguf-loaded model as quantized and refuses save_pretrained: build a plain model from
    # the same config (without the quantization block) and move the dequantized weights into it.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict["dtype"] = "bfloat16"
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise TuillmError(f"{gguf_path}: dequantized weights do not fit the model (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    model.tie_weights()
    del loaded
    # bf16 halves the disk copy; the values of 4-8 bit GGUF blocks need no more than that.
    model = model.to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def quiet_transformers() -> None:
    """No progress bars or advice from transformers: our own events report the work."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


# The JSON files of a folder that transformers reads, checked before it does: a hostile one (not JSON, not an object,
# nested past the parser's depth) is then one line, not a RecursionError from deep inside transformers.
CHECKED_JSON = ("config.json", "tokenizer_config.json", "tokenizer.json")


def check_json_files(folder: Path) -> None:
    for name in CHECKED_JSON:
        if (folder / name).is_file():
            read_json(folder / name)


def read_json(path: Path) -> dict:
    """A JSON object of a model's folder; ``ModelFileError`` (one line) when it is anything else."""
    from tuillm.convert.checkpoint import read_json_object
    from tuillm.convert.errors import JSONFileError

    try:
        return read_json_object(path)
    except JSONFileError as exc:
        raise ModelFileError(exc.path, exc.problem) from None


def read_config(folder: Path) -> dict:
    return read_json(Path(folder) / "config.json")


def load_tokenizer(folder: Path):  # noqa: ANN201 - a transformers tokenizer
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (ValueError, OSError, KeyError) as exc:
        raise ModelFileError(folder, f"cannot load its tokenizer ({first_line(exc)})") from None


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    from tuillm.core.models.hardware import training_device

    return training_device()


def pick_dtype(device: str, requested: str = "auto") -> str:
    """The frozen base's dtype (its forward runs under autocast in it; LoRA weights and AdamW stay float32).

    auto: bf16 where the hardware computes in it natively (a CUDA GPU that has it, MPS, a CPU with AVX-512 BF16 or
    AMX), float16 on an older CUDA GPU, else float32 (a CPU without bf16 units emulates it, slower than float32).
    """
    if requested != "auto":
        if requested not in ("float32", "bfloat16", "float16"):
            raise TuillmError(f"unknown dtype {requested!r}; choose float32, bfloat16 or float16")
        return requested
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "bfloat16"
    from tuillm.core.models.hardware import cpu_bf16

    return "bfloat16" if cpu_bf16() else "float32"


def load_model(folder: Path, device: str, dtype: str, quant: str = "none"):  # noqa: ANN201 - a transformers model
    """The base on ``device`` in ``dtype``; ``quant="4bit"``: its linear layers in NF4 through bitsandbytes (CUDA
    only, checked by the caller), computing in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    extra: dict = {"ignore_mismatched_sizes": True}  # a weight of another shape is reported below, in one line
    if quant == "4bit":
        from transformers import BitsAndBytesConfig

        # QLoRA's recipe: NF4 weights with their scales quantized too, products in the run's dtype.
        extra = {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=getattr(torch, dtype)),
                 "device_map": {"": device}}
    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype),
                                                           trust_remote_code=False, use_safetensors=True,
                                                           output_loading_info=True, **extra)
    except (ValueError, OSError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelFileError(folder, f"transformers cannot load it ({first_line(exc)})") from None
    check_loaded(folder, info)
    return model if quant == "4bit" else model.to(device)  # a 4-bit model is placed by device_map, never moved


def check_loaded(folder: Path, info: dict) -> None:
    """Every weight the config describes was read from the folder: transformers fills one it lacks (a config.json
    of a layer more, or of other widths) with random numbers, and the run or the merge went on with them."""
    missing = sorted(info.get("missing_keys") or ())
    other = sorted(k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ())
    if missing or other:
        first = f"{missing[0]} is missing" if missing else f"{other[0]} is of another shape"
        more = len(missing) + len(other) - 1
        raise ModelFileError(folder, f"its weights do not fit its config.json: {first}"
                             f"{f' (and {more} more)' if more else ''}; transformers would fill them with random "
                             "numbers")


def empty_model(folder: Path, dtype: str):  # noqa: ANN201 - a transformers model
    """The base's modules in ``dtype`` with no weights (on the meta device): FSDP's ranks other than 0 shard this,
    and rank 0 sends them their shares of the weights it read (core.train.distributed.send_base)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype), trust_remote_code=False)
    except (ValueError, OSError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelFileError(folder, f"transformers cannot build it ({first_line(exc)})") from None
