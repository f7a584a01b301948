"""What a run leaves on disk: checkpoints to resume from, and the finished adapter.

Checkpoints (adapter, optimizer moments, RNG states, loss log) are safetensors + JSON — nothing is ever
unpickled — so a resumed run replays exactly what an uninterrupted one would. Every folder is written under a
temporary name and renamed: an interrupted save never looks complete. A write that fails (a full disk) removes
its temporary and stops the run with one line; the checkpoints already saved stay, to resume from. Temporaries a
killed run left (``tuillm.convert.output.temp_name``: their pid no longer runs) go when the name is written again.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuillm.convert.errors import ConvertError
from tuillm.convert.hparams import json_shown
from tuillm.convert.output import TEMP_MARK, check_output, describe_os_error, remove_stale, temp_name
from tuillm.core.errors import TuillmError, first_line
from tuillm.core.files import check_can_write, named_path
from tuillm.core.text import shown
from tuillm.core.train.options import TrainConfig

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
TRAINING_FILE = "training.json"
LOSS_LOG = "loss_log.jsonl"
ADAPTER_CONFIG = "adapter_config.json"  # written last: its presence marks a finished adapter
# The other files of a finished adapter, moved into the output folder before ADAPTER_CONFIG.
ADAPTER_FILES = (TRAINING_FILE, LOSS_LOG, "adapter_model.safetensors", "README.md")
CHECKPOINT_FILES = ("state.json", "adapter.safetensors", "optimizer.safetensors")  # what a checkpoint folder holds


@dataclass
class TrainResult:
    output: Path
    steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens: int
    seconds: float
    loss_log: list[dict[str, Any]] = field(default_factory=list)


def _atomic_dir(final: Path) -> Path:
    remove_stale(final)
    tmp = temp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_file(path: Path, data: bytes) -> None:
    """Every checkpoint file is written here, with Python's own I/O and an fsync: a full disk is an OSError at
    once (with delayed allocation, some file systems only report it at the sync), never a file cut short."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _kept(folder: Path) -> str:
    latest = latest_checkpoint(folder)
    if latest is None:
        return "no checkpoint was saved"
    return f"the checkpoint {latest} is kept (free some space, then --resume continues from it)"


def _write_failed(exc: BaseException, path: Path, folder: Path, what: str) -> TuillmError:
    reason = describe_os_error(exc, path) if isinstance(exc, OSError) else f"{path.parent}: {first_line(exc)}"
    return TuillmError(f"{reason}; {what} was not written; {_kept(folder)}")


def _optimizer_tensors(optimizer: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]], Any]:
    """The optimizer's state as tensors (moments, RNG states) and scalars (step counts), and its param groups."""
    import torch

    state = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = float(value)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors, scalars, state["param_groups"]


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is (or will be) in ``folder``."""
    return Path(folder) / CHECKPOINTS / f"step-{step:07d}"


def save_checkpoint(folder: Path, model: Any, optimizer: Any, step: int, log: list[dict], config: TrainConfig,
                    extra: dict[str, Any]) -> Path:
    """``folder/checkpoints/step-N``: adapter weights, optimizer moments and RNG states as safetensors, the rest as
    JSON; written to a temporary name and renamed; only the latest ``KEEP_CHECKPOINTS`` are kept."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    root = folder / CHECKPOINTS
    final = checkpoint_path(folder, step)
    adapter = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    tensors, scalars, groups = _optimizer_tensors(optimizer)
    meta = {"step": step, "param_groups": groups, "scalars": scalars, "loss_log": log,
            "fingerprint": config.fingerprint(), "base_model_type": _model_type(model), **extra}
    tmp = temp_name(final)
    try:
        tmp = _atomic_dir(final)
        write_file(tmp / "adapter.safetensors", save(adapter))
        write_file(tmp / "optimizer.safetensors", save(tensors))
        write_file(tmp / "state.json", json.dumps(meta).encode())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(exc, final, folder, f"the checkpoint of step {step}") from None
    for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_temporaries(folder: Path) -> None:
    """The half-written checkpoints and adapter a killed run left in ``folder`` (their pid no longer runs)."""
    remove_stale(Path(folder) / "adapter")
    root = Path(folder) / CHECKPOINTS
    names = {m.group(1) for p in (root.iterdir() if root.is_dir() else ())
             if (m := re.match(r"\.(step-\d+)\." + TEMP_MARK + r"\d+\.", p.name))}
    for name in names:
        remove_stale(root / name)


def remove_if_empty(folder: Path) -> None:
    """``folder`` removed when nothing is in it but an empty checkpoints folder (a run that saved nothing): only
    empty folders are removed, never a file."""
    for path in (Path(folder) / CHECKPOINTS, Path(folder)):
        try:
            path.rmdir()
        except OSError:
            pass


def output_folder(config: TrainConfig, force: bool) -> tuple[Path, Path | None]:
    """The output folder, checked before anything loads, and the checkpoint to resume from.

    Never the base or a data file, inside the base folder or a folder that holds them; a finished adapter, a file
    named as one of its files (a README.md of the user's) or the checkpoints of another run there are replaced only
    with ``force`` (resuming continues the checkpoints). A place where no folder can be made (``/proc/x``, under a
    file, read-only) is refused here, not after the model loaded.
    """
    out = named_path(str(config.output), "output folder")
    if out.is_symlink() and not out.exists():  # passed every check below, then making the folder crashed
        raise TuillmError(f"{out}: a broken symbolic link (to {os.readlink(out)}); remove it or choose another "
                          "output folder")
    if out.exists() and not out.is_dir():
        raise TuillmError(f"{out}: exists and is not a folder")
    try:
        check_output(out, [Path(config.base), *map(Path, config.data)], force=True)  # an existing folder: below
    except ConvertError as exc:
        raise TuillmError(str(exc)) from None
    check_can_write(out)  # (after: never a probe inside an input)
    if (out / ADAPTER_CONFIG).exists() and not force:
        raise TuillmError(f"{out}: already holds a trained adapter; choose another output folder, or --force "
                          "replaces it")
    taken = [name for name in ADAPTER_FILES if (out / name).exists() or (out / name).is_symlink()]
    if taken and not force:  # a folder of the user's own (its README.md): the adapter's files would replace them
        raise TuillmError(f"{out}: already holds {', '.join(taken)}, which the adapter would replace; choose another "
                          "output folder, or --force replaces them")
    latest = latest_checkpoint(out)
    if not config.resume and latest is not None and not force:
        raise TuillmError(f"{out}: holds checkpoints of an unfinished run; resume it (--resume, or Resume in the Train "
                          "pane), or choose another output folder")
    return out, latest if config.resume else None


def latest_checkpoint(folder: Path) -> Path | None:
    done = [p for p in sorted((Path(folder) / CHECKPOINTS).glob("step-*")) if (p / "state.json").is_file()]
    return done[-1] if done else None


def check_fingerprint(path: Path, meta: dict[str, Any], config: TrainConfig) -> None:
    saved = meta.get("fingerprint", {})
    now = config.fingerprint()
    # JSON turns tuples into lists: compare through the same round trip.
    differing = [k for k in now if json.loads(json.dumps(now[k])) != saved.get(k)]
    if differing:
        raise TuillmError(f"{path}: the checkpoint was made with other settings ({', '.join(differing)}); "
                          "use the same ones to resume, or another output folder")


def load_checkpoint(path: Path, model: Any, optimizer: Any, config: TrainConfig) -> dict[str, Any]:
    """Puts a checkpoint's adapter, optimizer and RNG states back; its JSON part (step, loss log) is returned. A
    damaged one (a file cut short, edited, another program's) is a ``TuillmError`` naming it."""
    from safetensors import SafetensorError

    odd = next((name for name in CHECKPOINT_FILES if not (path / name).is_file()), None)
    if odd is not None:  # a FIFO there blocked the resume for ever (its open waits for a writer)
        raise _damaged(path, f"{odd} is not a file")
    try:
        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, MemoryError) as exc:  # MemoryError: a huge (sparse) file
        raise _damaged(path, f"state.json: {exc.__class__.__name__}") from None
    if not isinstance(meta, dict):
        raise _damaged(path, "state.json is not a JSON object")
    problem = _meta_problem(path, meta)
    if problem is not None:
        raise _damaged(path, f"state.json: {problem}")
    check_fingerprint(path, meta, config)
    _check_model_type(path, meta, model)
    try:
        _restore(path, meta, model, optimizer)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, SafetensorError) as exc:
        raise _damaged(path, exc.__class__.__name__) from None
    return meta


def _model_type(model: Any) -> str | None:
    """The ``model_type`` of the base under a PEFT model (peft hands ``config`` on to the base)."""
    value = getattr(getattr(model, "config", None), "model_type", None)
    return value if isinstance(value, str) else None


def _check_model_type(path: Path, meta: dict[str, Any], model: Any) -> None:
    """A checkpoint goes on only over a base of its architecture: over another of the same shapes it trained on,
    and the adapter was recorded as the other model's (a checkpoint of an older version names none)."""
    saved, now = meta.get("base_model_type"), _model_type(model)
    if isinstance(saved, str) and now is not None and saved != now:
        raise TuillmError(f"{path}: the checkpoint was made on a {shown(saved, 40)} model, and this base is a {now} "
                          "model; resume with the base it was trained on, or use another output folder")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _meta_problem(path: Path, meta: dict[str, Any]) -> str | None:
    """What is wrong with the values a resumed run takes from state.json (its step, counts and loss log), or None:
    its step is the one its folder is named for, the loss log a list of step records."""
    named = re.fullmatch(r"step-(\d+)", path.name)
    if not _whole(meta.get("step")) or named is None or meta["step"] != int(named.group(1)):
        return f"step {json_shown(meta.get('step'))} is not the step of {path.name}"
    if not _whole(meta.get("tokens", 0)):
        return f"tokens {json_shown(meta.get('tokens'))} is not a count"
    if not isinstance(meta.get("fingerprint", {}), dict):
        return "the fingerprint is not an object"
    if not valid_data_record(meta.get("data", [])):  # (absent from an older version's: core.train.resume)
        return "the data record is not a list of files (each a path, a size and a sha256)"
    log = meta.get("loss_log")
    if not isinstance(log, list) or not all(
            isinstance(r, dict) and _whole(r.get("step")) and _number(r.get("loss")) for r in log):
        return "the loss log is not a list of step records (a step and a finite loss each)"
    return None


def valid_data_record(record: Any) -> bool:
    """Whether state.json's ``data`` (core.train.resume.data_record) is a list of files as a run writes it."""
    return isinstance(record, list) and all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
        and _whole(f.get("size")) for f in record)


def _damaged(path: Path, why: str) -> TuillmError:
    return TuillmError(f"{path}: a damaged checkpoint ({why}); delete it to resume from the one before, or train "
                       "afresh with --force")


def _restore(path: Path, meta: dict[str, Any], model: Any, optimizer: Any) -> None:
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = load_file(str(path / "adapter.safetensors"))
    wanted = get_peft_model_state_dict(model)
    # dtype: float32 bytes declared int32 load as huge numbers, which peft casts without a word.
    odd = next((k for k in sorted(set(adapter) | set(wanted)) if k not in adapter or k not in wanted
                or adapter[k].shape != wanted[k].shape or adapter[k].dtype != wanted[k].dtype
                or not bool(torch.isfinite(adapter[k]).all())), None)
    if odd is not None:  # peft would load a part, or NaNs, and the run go on as if it were whole
        raise _damaged(path, f"adapter.safetensors: {odd} is missing, of another shape or dtype, or not finite")
    set_peft_model_state_dict(model, adapter)
    tensors = load_file(str(path / "optimizer.safetensors"))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[Any, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        pid, name = key.split(".", 1)
        index = int(pid)
        if not (0 <= index < len(params) and value.shape == params[index].shape
                and value.dtype == params[index].dtype and bool(torch.isfinite(value).all())):
            raise _damaged(path, f"optimizer.safetensors: {key} does not fit the adapter's weights")
        state.setdefault(index, {})[name] = value
    for pid, values in meta["scalars"].items():
        for name, value in values.items():
            # AdamW's step count (its bias correction) is at most the checkpoint's step.
            if not (_number(value) and 0 <= value <= meta["step"] and 0 <= int(pid) < len(params)):
                raise _damaged(path, f"state.json: the optimizer's {name} of {pid} is {json_shown(value)}")
            state.setdefault(int(pid), {})[name] = torch.tensor(value)
    # The settings (betas, eps, maximize, ...) are the run's own, not the file's: an edited state.json could make
    # AdamW climb the loss. The learning rate is set again at every step.
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)


def write_outputs(out: Path, model: Any, config: TrainConfig, base_folder: Path, result: TrainResult) -> None:
    """Adapter (PEFT format), the training parameters and the loss log; adapter files appear only complete.

    A failed write (a full disk) leaves the folder as it was, checkpoints included (the caller removes them only
    after this succeeds).
    """
    from safetensors import SafetensorError  # peft writes the weights through safetensors, which raises this

    tmp = temp_name(out / "adapter")
    try:
        tmp = _atomic_dir(out / "adapter")
        model.save_pretrained(str(tmp))
        peft_config = json.loads((tmp / ADAPTER_CONFIG).read_text())
        peft_config["base_model_name_or_path"] = str(base_folder)
        write_file(tmp / ADAPTER_CONFIG, json.dumps(peft_config, indent=2).encode())
        params = {**asdict(config), "base_folder": str(base_folder), "base_model_type": base_model_type(base_folder),
                  "steps": result.steps, "train_loss": result.train_loss, "eval_loss": result.eval_loss,
                  "tokens": result.tokens, "seconds": round(result.seconds, 2)}
        write_file(tmp / TRAINING_FILE, json.dumps(params, indent=2).encode())
        write_file(tmp / LOSS_LOG, "".join(json.dumps(r) + "\n" for r in result.loss_log).encode())
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(exc, out / ADAPTER_CONFIG, out, "the adapter") from None
    # The config goes last: its presence marks a finished adapter for merge and export.
    for name in (*ADAPTER_FILES, ADAPTER_CONFIG):
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)


def base_model_type(folder: Path) -> str | None:
    """A base's ``model_type`` (its config.json), recorded in training.json: a merge or an export onto a model of
    another architecture whose layers have the same shapes (a Llama 3 8B adapter onto Mistral 7B) is refused."""
    try:
        value = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError, RecursionError, MemoryError):
        return None
    return value if isinstance(value, str) else None


def training_record(adapter_dir: Path) -> dict[str, Any]:
    """training.json of an adapter folder; {} for an adapter from elsewhere or a record that cannot be read (not
    JSON, not an object, nested past the parser's depth, a huge sparse file)."""
    try:
        record = json.loads((Path(adapter_dir) / TRAINING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, MemoryError):
        return {}
    return record if isinstance(record, dict) else {}
