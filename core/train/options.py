"""The training options, declared once: ``TRAIN_OPTIONS`` (name, default, bounds, choices, help, flag, group) and
``TrainConfig``, whose defaults and checks come from it.

``tuillm train``'s flags (``tuillm.tui.cli.options.add_options``) and the Train pane's form are built from the same
tuple, so a default or a bound cannot drift between the command line, the pane and the core (mlx-lm's
``CONFIG_DEFAULTS`` is the pattern). The order is the form's reading order (two fields a row); ``group`` is the
heading in ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuillm.core.errors import TuillmError
from tuillm.core.options import Option, OptionError, option_map

SCHEDULES = ("cosine", "linear", "constant")
PACKINGS = ("auto", "row", "each")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTS = ("none", "4bit")  # 4bit: QLoRA, the base in NF4 through bitsandbytes (CUDA only)
METHODS = ("sft", "dpo")  # supervised answers; preference pairs (core.train.dpo)
# The default LoRA targets: attention and MLP projections under the names the supported architectures use.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                   "gate_up_proj")
TARGET_WORDS = ("default", "all-linear")  # what "targets" takes besides module names
MAX_SEED = 2**32 - 1  # torch and numpy seeds are 32-bit at most everywhere
MAX_EPOCHS = 10_000
MAX_STEPS = 100_000_000
# Beyond any model (a layer's width, a context): a typo such as a pasted 400-digit number overflowed the memory
# estimate's floats (the pane crashed), and a batch above 1e308 made a plan of no micro-batches.
MAX_RANK = 65_536
MAX_TOKENS = 2**24
MAX_BATCH = 1_048_576

_LORA, _DATA, _TRAINING = "LoRA", "data", "training"

TRAIN_OPTIONS: tuple[Option, ...] = (
    Option("method", str, "sft", "sft: learn the answers of the data; dpo: prefer the chosen answer of each "
           "preference pair (prompt/chosen/rejected rows) over the rejected one", choices=METHODS, group=_TRAINING),
    Option("beta", float, 0.1, "DPO's beta: how strongly the preference may pull the adapter away from the base "
           "(higher keeps it closer); used with --method dpo", lo=0, lo_open=True, hi=10, group=_TRAINING,
           label="DPO beta"),
    Option("rank", int, 16, "LoRA rank: the adapter's size", lo=1, hi=MAX_RANK, group=_LORA),
    Option("alpha", float, 32.0, "LoRA alpha; the update is scaled by alpha/rank", lo=0, lo_open=True,
           group=_LORA),
    Option("max_len", int, 512, "tokens per example; longer ones are cut", lo=2, hi=MAX_TOKENS, group=_DATA),
    Option("batch_size", int, 4, "examples per micro-batch", lo=1, hi=MAX_BATCH, group=_TRAINING),
    # The upper bounds catch typos: a run of 1e308 epochs trained on with an ETA of 300 digits.
    Option("epochs", float, 1.0, "passes over the data", lo=0, lo_open=True, hi=MAX_EPOCHS, group=_TRAINING),
    Option("max_steps", int, None, "stop after this many steps (overrides epochs; none: by epochs)", lo=1,
           hi=MAX_STEPS, optional=True, metavar="STEPS", group=_TRAINING),
    Option("lr", float, 2e-4, "peak learning rate", lo=0, lo_open=True, group=_TRAINING, label="LR"),
    Option("grad_accum", int, 1, "micro-batches per optimizer step", lo=1, group=_TRAINING),
    # 0, as peft, mlx-lm and unsloth default: dropout copies every LoRA input, ~15% of a step's time on CPU.
    Option("dropout", float, 0.0, "LoRA dropout", lo=0, hi=1, hi_open=True, group=_LORA),
    Option("warmup", float, 0.03, "warmup: a fraction of the steps if < 1, else a step count", lo=0, hi=MAX_STEPS,
           group=_TRAINING),
    Option("eval_fraction", float, 0.0, "fraction of the examples held out for eval loss", lo=0, hi=1,
           hi_open=True, flag="--eval-split", metavar="FRACTION", group=_DATA, label="Eval split"),
    Option("eval_every", int, None, "eval loss every N steps (none: at the end only)", lo=1, optional=True,
           metavar="STEPS", group=_DATA),
    Option("save_every", int, 100, "checkpoint every N steps (0: only when interrupted)", lo=0, metavar="STEPS",
           group=_TRAINING),
    Option("seed", int, 0, "shuffling and initialisation seed", lo=0, hi=MAX_SEED, group=_TRAINING),
    Option("log_every", int, 1, "a progress line every N steps (0: none)", lo=0, metavar="STEPS",
           group=_TRAINING),
    Option("targets", str, "default", "LoRA targets: comma-separated module names, all-linear, or default "
           "(attention and MLP projections)", metavar="NAMES", group=_LORA,
           pattern=r"[\s,]*[\w.\-]+[\w.\-\s,]*", pattern_words="module names (comma-separated), all-linear or default"),
    Option("schedule", str, "cosine", "learning-rate schedule after warmup", choices=SCHEDULES, group=_TRAINING),
    Option("device", str, "auto", "auto: CUDA, then MPS, then CPU", choices=DEVICES, group=_TRAINING),
    Option("dtype", str, "auto", "the frozen base's dtype (LoRA weights stay float32); auto: bfloat16 where the "
           "hardware has it (a GPU, MPS, a CPU with AVX-512 BF16 or AMX), float16 on an older GPU, else float32",
           choices=DTYPES, group=_TRAINING),
    Option("quant", str, "none", "4bit: QLoRA, the base loaded in 4-bit NF4 through bitsandbytes (CUDA only)",
           choices=QUANTS, group=_TRAINING, label="Quantize base"),
    Option("packing", str, "auto", "how a micro-batch runs, with no padding either way: row packs it in one "
           "sequence (each example attends to itself only), each runs its examples one by one; auto: one row on "
           "CUDA, rows of up to max_len (at least 512) tokens on CPU/MPS", choices=PACKINGS, group=_TRAINING),
    Option("nproc", int, 1, "data-parallel processes (DDP through accelerate; gloo on CPU, NCCL on CUDA): at most "
           "the CPU cores, or the GPUs on CUDA; the same global batch, shared out by rank", lo=1, metavar="N",
           group=_TRAINING, label="Processes"),
    Option("train_on_prompt", bool, False, "put loss on every token, not only the assistant's", group=_DATA),
    Option("grad_checkpointing", bool, False, "trade compute for memory", group=_TRAINING),
    Option("fsdp", bool, False, "shard the frozen base across the processes (FSDP), for a base too big for one GPU; "
           "--nproc 2 or more", group=_TRAINING, label="FSDP"),
    Option("resume", bool, False, "continue from the latest checkpoint in the output folder", group=_TRAINING),
)
_OPTION = option_map(TRAIN_OPTIONS)


def parse_targets(text: str) -> list[str] | str:
    """LoRA targets as typed by a user: "default", "all-linear", or comma-separated module names."""
    text = text.strip() or "default"
    if text in TARGET_WORDS:
        return text
    return [t.strip() for t in text.split(",") if t.strip()]


def format_targets(targets: list[str] | tuple[str, ...] | str) -> str:
    """The text ``parse_targets`` reads back."""
    return targets if isinstance(targets, str) else ",".join(targets)


def option_problem(option: Option, value: Any) -> str | None:
    """The option's one-line refusal of ``value`` ("LR: must be a number above 0, not 0"), or None."""
    try:
        option.check(value)
    except OptionError:
        return option.refusal(option.title, value)
    return None


@dataclass
class TrainConfig:
    base: str  # path of an HF folder or a GGUF (already resolved by the caller)
    data: list[str]
    output: str
    method: str = _OPTION["method"].default
    beta: float = _OPTION["beta"].default  # DPO only
    rank: int = _OPTION["rank"].default
    alpha: float = _OPTION["alpha"].default
    dropout: float = _OPTION["dropout"].default
    targets: list[str] | str = _OPTION["targets"].default  # "default", "all-linear", or module names
    max_len: int = _OPTION["max_len"].default
    batch_size: int = _OPTION["batch_size"].default
    grad_accum: int = _OPTION["grad_accum"].default
    lr: float = _OPTION["lr"].default
    schedule: str = _OPTION["schedule"].default
    warmup: float = _OPTION["warmup"].default  # a fraction of the steps when < 1, else a number of steps
    weight_decay: float = 0.0  # AdamW's; not a user option (LoRA runs do not need it)
    epochs: float = _OPTION["epochs"].default
    max_steps: int | None = _OPTION["max_steps"].default
    eval_fraction: float = _OPTION["eval_fraction"].default
    eval_every: int | None = _OPTION["eval_every"].default  # steps; None: at the end only
    save_every: int = _OPTION["save_every"].default  # steps; 0: only when cancelled
    grad_checkpointing: bool = _OPTION["grad_checkpointing"].default
    nproc: int = _OPTION["nproc"].default  # not in the fingerprint: the global batch, hence the run, is the same
    fsdp: bool = _OPTION["fsdp"].default
    # "row": a micro-batch's examples packed in one row with a block-diagonal mask (one big forward; attention
    # costs the square of the packed length); "each": one forward/backward per example, gradients summed.
    # "auto": on CPU/MPS rows of up to max_len tokens, on CUDA one row. None pads; the gradient is the same.
    packing: str = _OPTION["packing"].default
    train_on_prompt: bool = _OPTION["train_on_prompt"].default
    seed: int = _OPTION["seed"].default
    device: str = _OPTION["device"].default
    dtype: str = _OPTION["dtype"].default
    quant: str = _OPTION["quant"].default
    resume: bool = _OPTION["resume"].default
    log_every: int = _OPTION["log_every"].default

    @property
    def assistant_only(self) -> bool:
        """Only the assistant's tokens carry loss (the data rules' name for it)."""
        return not self.train_on_prompt

    def option_values(self) -> dict[str, Any]:
        """The declared options' values (targets as text)."""
        values = {o.name: getattr(self, o.name) for o in TRAIN_OPTIONS}
        values["targets"] = format_targets(self.targets)
        return values

    def check(self) -> None:
        """Every declared option's value checked by its declaration; one TuillmError listing what is wrong."""
        values = self.option_values()
        problems = [p for o in TRAIN_OPTIONS if (p := option_problem(o, values[o.name])) is not None]
        if self.fsdp and self.quant != "none":
            problems.append("--fsdp shards a base of full-precision weights: leave out --quant (QLoRA) with it")
        if self.method == "dpo" and self.train_on_prompt:
            problems.append("--train-on-prompt is for supervised data: DPO scores the answers only")
        if problems:
            raise TuillmError("; ".join(problems))

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed into this run."""
        keys = ("rank", "alpha", "targets", "max_len", "batch_size", "grad_accum", "seed", "assistant_only",
                "eval_fraction", "method", "beta")
        return {k: getattr(self, k) for k in keys}
