"""Data-parallel training through Hugging Face accelerate: one process per rank, the same global batch.

The loop (core.train.loop) talks to ``Ranks``: ``Single`` is the one-process run (every hook a no-op, so its
arithmetic is what it always was); ``DataParallel`` is a rank of a run that a launcher started (``tuillm train
--nproc N`` through core.train.dist_launch, or ``torchrun``/``accelerate launch`` of ``tuillm train``: RANK and
WORLD_SIZE are in the environment). accelerate's ``Accelerator`` joins the process group (gloo on CPU, NCCL on
CUDA) and wraps the model in DDP; with ``--fsdp``, torch's FSDP2 shards the frozen base across the ranks instead.

How a step is shared: every rank builds the same micro-batches (same seed, same data); the step's examples are
dealt out by tokens (longest first to the rank with the fewest so far: deterministic, balanced) and each rank runs
its share (DPO's pairs likewise, ``shares``: core.train.dpo). Each loss is divided by the step's trained tokens over
all ranks and multiplied by the world size, so DDP's mean of the ranks' gradients is the one-process gradient. The
eval set is shared out too (``eval_passes``), its sums totalled. Only rank 0 writes checkpoints and outputs and
emits events; a cancel or a memory stop on any rank stops all of them after the same step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta
from typing import Any, Protocol

from tuillm.convert.child import usable_cpus
from tuillm.core.errors import TuillmError
from tuillm.core.text import format_bytes
from tuillm.core.train.data import IGNORE, PackedBatch
from tuillm.core.train.options import TrainConfig
from tuillm.core.train.passes import split_packed

# A collective waits this long for a peer before it fails (a backstop: the launcher ends the run as soon as a rank
# dies, and gloo fails at once when a peer's connection closes). Long enough for rank 0's eval and checkpoints.
COLLECTIVE_TIMEOUT_S = 1800


class PeerLost(TuillmError):
    """Another rank of the run stopped (killed, or failed): the collective this rank waited in failed."""


class Ranks(Protocol):
    """What the loop asks of the processes of a run (one, or a data-parallel group)."""

    rank: int
    world: int
    main: bool
    lockstep: bool  # every rank must run as many forwards (FSDP gathers the weights in each, with all ranks)
    loads_base: bool  # this rank reads the base's weights (FSDP: rank 0 alone, and sends the others their shares)

    def place(self, device: str) -> str: ...
    def wrap(self, model: Any) -> Any: ...
    def unwrap(self, model: Any) -> Any: ...
    def first(self) -> AbstractContextManager[None]: ...
    def rows(self, batches: list[PackedBatch], limit: int | None) -> list[PackedBatch]: ...
    def shares(self, sizes: list[int]) -> list[list[int]]: ...
    def sync(self, model: Any, last: bool) -> AbstractContextManager[None]: ...
    def backward(self, loss: Any) -> None: ...
    def total(self, value: float) -> float: ...
    def any(self, flag: bool) -> bool: ...
    def barrier(self) -> None: ...
    def seed(self, seed: int, step: int) -> None: ...
    def finish(self) -> None: ...


class Single:
    """The one-process run: the rows of every micro-batch, plain backward, nothing to agree on."""

    rank, world, main, lockstep, loads_base = 0, 1, True, False, True

    def place(self, device: str) -> str:
        return device

    def wrap(self, model: Any) -> Any:
        return model

    def unwrap(self, model: Any) -> Any:
        return model

    def first(self) -> AbstractContextManager[None]:
        return nullcontext()

    def rows(self, batches: list[PackedBatch], limit: int | None) -> list[PackedBatch]:
        return [row for packed in batches for row in split_packed(packed, limit) if row.trained_tokens]

    def shares(self, sizes: list[int]) -> list[list[int]]:
        return [list(range(len(sizes)))]

    def sync(self, model: Any, last: bool) -> AbstractContextManager[None]:
        return nullcontext()

    def backward(self, loss: Any) -> None:
        loss.backward()

    def total(self, value: float) -> float:
        return value

    def any(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        pass

    def seed(self, seed: int, step: int) -> None:
        pass

    def finish(self) -> None:
        pass


def launched_world() -> int:
    """The number of processes a launcher (ours, torchrun, accelerate launch) started this one among; 1: none."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def should_launch(config: TrainConfig) -> bool:
    """``--nproc`` above 1 in a process no launcher started: core.train.dist_launch starts the ranks."""
    return config.nproc > 1 and launched_world() == 1


def device_count(device: str) -> int:
    """How many processes ``device`` takes: CPU cores (this process may use), or GPUs."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.device_count()
    return usable_cpus() if device == "cpu" else 1


def gpus_seen() -> int:
    """NVIDIA GPUs this process would see, without importing torch (for a form): CUDA_VISIBLE_DEVICES when set,
    else the /dev/nvidiaN device nodes."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([n for n in os.listdir("/dev") if n[:6] == "nvidia" and n[6:].isdigit()]) if os.path.isdir("/dev") else 0


def unoffered_options() -> set[str]:
    """The options a form leaves out here: the process count and FSDP with one CPU core and at most one GPU."""
    return {"nproc", "fsdp"} if gpus_seen() < 2 and device_count("cpu") < 2 else set()


def check_nproc(config: TrainConfig, device: str, world: int) -> None:
    """``--nproc`` and ``--fsdp`` against the machine and the launcher; one TuillmError saying what is wrong."""
    if config.fsdp and device != "cpu" and not device.startswith("cuda"):
        raise TuillmError(f"--fsdp shards the base across CUDA GPUs or CPU processes (this run is on {device}); "
                          "leave it out")
    if config.fsdp and max(world, config.nproc) < 2:
        raise TuillmError("--fsdp needs --nproc 2 or more (it shards the base across processes)")
    if world > 1:
        if config.nproc not in (1, world):
            raise TuillmError(f"--nproc {config.nproc}, but the launcher started {world} processes (WORLD_SIZE); "
                              "give one or the other")
        return
    available = device_count(device)
    if config.nproc > available:
        what = "GPU" if device.startswith("cuda") else "CPU core" if device == "cpu" else f"{device} device"
        raise TuillmError(f"--nproc {config.nproc}: this machine has {available} {what}{'s' * (available != 1)}; "
                          f"at most {available}")


def deal(sizes: list[int], world: int) -> list[list[int]]:
    """Indices of ``sizes`` dealt to ``world`` ranks by size: the largest first, each to the rank holding the
    fewest so far (the lowest rank on a tie); each rank's indices in their first order."""
    held = [0] * world
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        r = min(range(world), key=lambda r: (held[r], r))
        held[r] += sizes[i]
        shares[r].append(i)
    return [sorted(share) for share in shares]


def joined(rows: list[PackedBatch]) -> PackedBatch:
    """Packed rows as one packed batch (each example keeps its positions and labels)."""
    return PackedBatch([t for r in rows for t in r.input_ids], [t for r in rows for t in r.labels],
                       [t for r in rows for t in r.position_ids], sum(r.n_examples for r in rows))


def share_rows(batches: list[PackedBatch], limit: int | None, rank: int, world: int, *,
               even: bool = False) -> list[PackedBatch]:
    """Rank ``rank``'s rows of a step: its dealt examples, packed again by ``limit`` (None: rows of at most the
    longest micro-batch, the pass the memory estimate counts). A rank dealt nothing (a short last step) gets one
    example with no trained token: its backward gives zero gradients, and DDP's all-reduce, which every rank must
    join, still happens. ``even`` (FSDP, which gathers the weights in every forward with all ranks): every rank
    runs as many rows, the short ones made up with such rows."""
    if limit is None:
        limit = max(len(packed.input_ids) for packed in batches)
    examples = [row for packed in batches for row in split_packed(packed, 0)]
    shares = deal([len(e.input_ids) for e in examples], world)
    idle = PackedBatch(examples[0].input_ids, [IGNORE] * len(examples[0].labels), examples[0].position_ids,
                       examples[0].n_examples)

    def rows_of(share: list[int]) -> list[PackedBatch]:
        rows = [row for row in split_packed(joined([examples[i] for i in share]), limit) if row.trained_tokens] \
            if share else []
        return rows or [idle]

    mine = rows_of(shares[rank])
    if even:
        mine += [idle] * (max(len(rows_of(share)) for share in shares) - len(mine))
    return mine


def eval_passes(n: int, rank: int, world: int) -> list[tuple[int, bool]]:
    """Rank ``rank``'s passes over ``n`` eval items, as (item, counted): every ``world``-th item from its own, then
    item 0 uncounted until it has run as many passes as the first rank (FSDP gathers the weights in every forward,
    with every rank taking part)."""
    mine = [(i, True) for i in range(rank, n, world)]
    return mine + [(0, False)] * (-(-n // world) - len(mine))


class DataParallel:
    """A rank of a data-parallel run, through accelerate's ``Accelerator`` (it joins the process group, wraps the
    model in DDP); with ``--fsdp``, the frozen base sharded by FSDP2 instead (``shard``)."""

    def __init__(self, config: TrainConfig, device: str) -> None:
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        handlers = [InitProcessGroupKwargs(timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))]
        self.accelerator = Accelerator(cpu=device == "cpu", kwargs_handlers=handlers)
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        self.fsdp = self.lockstep = config.fsdp
        self.loads_base = not (self.fsdp and self.rank)
        self._trained: list[Any] = []  # FSDP: the LoRA weights, replicated, their gradients all-reduced here

    def place(self, device: str) -> str:
        return str(self.accelerator.device) if device.startswith("cuda") else device

    def wrap(self, model: Any) -> Any:
        if not self.fsdp:
            return self.accelerator.prepare_model(model)
        self._trained = [p for p in model.parameters() if p.requires_grad]
        loaded = whole_tensors(model) if self.loads_base else None
        shard(model, self._trained, self.accelerator.device.type, self.world)
        if not self.loads_base:
            model.to_empty(device=self.accelerator.device)  # room for this rank's shares, filled by rank 0
        send_base(model, loaded)
        del loaded
        return_freed_memory()
        return model

    def unwrap(self, model: Any) -> Any:
        return self.accelerator.unwrap_model(model)

    def first(self) -> AbstractContextManager[None]:
        return self.accelerator.main_process_first()

    def rows(self, batches: list[PackedBatch], limit: int | None) -> list[PackedBatch]:
        return share_rows(batches, limit, self.rank, self.world, even=self.lockstep)

    def shares(self, sizes: list[int]) -> list[list[int]]:
        return deal(sizes, self.world)

    def sync(self, model: Any, last: bool) -> AbstractContextManager[None]:
        # Gradients are all-reduced once a step, on the backward of the rank's last row.
        if self.fsdp:
            return self._reduce_after() if last else nullcontext()
        return collective() if last else self.accelerator.no_sync(model)

    @contextmanager
    def _reduce_after(self) -> Iterator[None]:
        """FSDP: after the last row's backward, the mean of the ranks' LoRA gradients, as DDP takes it."""
        import torch.distributed

        yield
        with collective():
            for p in self._trained:  # in the model's order: the same on every rank
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world

    def backward(self, loss: Any) -> None:
        self.accelerator.backward(loss * self.world)  # DDP averages over ranks: the sum is the one-process gradient

    def total(self, value: float) -> float:
        import torch

        with collective():
            return float(self.accelerator.reduce(torch.tensor([value], dtype=torch.float64), "sum")[0])

    def any(self, flag: bool) -> bool:
        return self.total(1.0 if flag else 0.0) > 0

    def barrier(self) -> None:
        with collective():
            self.accelerator.wait_for_everyone()

    def seed(self, seed: int, step: int) -> None:
        import torch

        if self.rank:  # dropout masks differ between ranks, as between the examples of one process
            torch.manual_seed((seed + 7919 * self.rank + 104729 * step) % 2**32)

    def finish(self) -> None:
        import torch.distributed

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def shard(model: Any, trained: list[Any], device_type: str, world: int) -> None:
    """FSDP2 (torch's ``fully_shard``) over a LoRA model's frozen base: each decoder layer (the model's
    ``_no_split_modules``) and the rest sharded across the ranks, gathered for each forward; the LoRA weights left
    out, whole on every rank (small: their optimizer, checkpoints and outputs are those of one process)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world,))
    ignored = set(trained)
    layers = set(model.get_base_model()._no_split_modules or ())
    for module in list(model.modules()):
        if type(module).__name__ in layers:
            fully_shard(module, mesh=mesh, ignored_params=ignored)
    # The root resharded after its passes too (FSDP keeps it gathered by default): rank 0 alone reads the state
    # dict for a checkpoint, which reshards it, and the ranks' next forwards would then gather different things.
    fully_shard(model, mesh=mesh, ignored_params=ignored, reshard_after_forward=True)


def whole_tensors(model: Any) -> dict[str, Any]:
    """The model's parameters and buffers by name, whole (rank 0's, before ``shard`` keeps its shares of them)."""
    return {name: t.detach() for name, t in [*model.named_parameters(), *model.named_buffers()]}


def send_base(model: Any, loaded: dict[str, Any] | None) -> None:
    """Rank 0's weights (``loaded``: its ``whole_tensors``; None on the others) to every rank, after ``shard``: each
    sharded parameter goes out whole one at a time and each rank keeps its share; the LoRA weights and the buffers
    are copied whole. So only rank 0 reads the base: the others hold their shares and one tensor at a time."""
    import torch
    import torch.distributed
    from torch.distributed.tensor import DTensor, distribute_tensor

    with collective():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not isinstance(tensor, DTensor):
                torch.distributed.broadcast(tensor.data, src=0)
                continue
            local = tensor.to_local()
            whole = loaded[name].to(local.device) if loaded is not None \
                else torch.empty(tensor.shape, dtype=tensor.dtype, device=local.device)
            torch.distributed.broadcast(whole, src=0)
            if loaded is None:  # (rank 0's share was cut from the same tensor)
                with torch.no_grad():
                    local.copy_(distribute_tensor(whole, tensor.device_mesh, tensor.placements,
                                                  src_data_rank=None).to_local())


def return_freed_memory() -> None:
    """Memory freed by the process handed back to the system. glibc keeps freed heap pages, so after rank 0 sent
    the base and dropped its whole copy, its RSS stayed that much higher through the run (measured on the demo in
    float32: 2.56 GB against 2.25 GB, tests/bench/fsdp_memory.py). Nothing to do elsewhere than glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def base_share(model: Any) -> str:
    """What this process holds of the frozen base, in one line (a share below 100% once ``shard`` ran)."""
    from torch.distributed.tensor import DTensor

    held = whole = 0
    for p in model.parameters():
        if not p.requires_grad:
            whole += p.numel() * p.element_size()
            held += (p.to_local() if isinstance(p, DTensor) else p).numel() * p.element_size()
    return f"this process holds {held / whole:.0%} of the frozen base ({format_bytes(held)} of {format_bytes(whole)})"


@contextmanager
def collective() -> Iterator[None]:
    """A collective that fails because a peer is gone raises ``PeerLost`` (one line, no traceback); the loop's
    steps run in one too, for the collectives FSDP makes in every forward."""
    import torch.distributed

    try:
        yield
    except torch.distributed.DistError as exc:
        raise PeerLost("another process of the run stopped (its connection closed)") from exc
    except RuntimeError as exc:
        if "gloo" in str(exc).lower() or "connection" in str(exc).lower() or "nccl" in str(exc).lower():
            raise PeerLost("another process of the run stopped (its connection closed)") from exc
        raise


def join(config: TrainConfig, device: str) -> Ranks:
    """The run's ranks: ``Single``, or this process's place in the data-parallel group a launcher started."""
    world = launched_world()
    check_nproc(config, device, world)
    return DataParallel(config, device) if world > 1 else Single()
