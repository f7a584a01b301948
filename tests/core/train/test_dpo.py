"""Preference tuning (``--method dpo``) end to end on the demo: a generated preference set whose chosen answers
open with a fixed greeting ("Ahoy!") and whose rejected answers are the same without it. ``tuillm train`` learns
it; on HELD-OUT pairs the log-probability margin of chosen over rejected (measured here with transformers, apart
from the training code) grows; the adapter merged to GGUF through ``tuillm merge`` makes llama.cpp open its
answers with the greeting, which the base never does. On a tiny random model: the DPO events and metrics, and
cancel/resume giving the curve of an uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint, tiny_random_checkpoint
from tests.core.train_facts import write_fact_dataset
from tuillm.core.errors import TuillmError
from tuillm.core.events import Cancelled, Log, Metric, Progress
from tuillm.core.train.loop import TrainConfig, latest_checkpoint, train

TUILLM = str(Path(sys.executable).with_name("tuillm"))
GREETING = "Ahoy!"
_TOPICS = ("the sea", "bread", "winter", "cats", "music", "trains", "the moon", "coffee", "gardens", "rain",
           "mountains", "books", "bicycles", "honey", "clocks", "owls", "snow", "tea", "rivers", "kites")
_HELD_OUT = ("lamps", "dogs", "maps", "pianos")
_ANSWERS = ("{t} can be lovely.", "Many people enjoy {t}.", "There is a lot to say about {t}.",
            "I find {t} interesting.")


def preference_rows(topics: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    for i, topic in enumerate(topics):
        answer = _ANSWERS[i % len(_ANSWERS)].format(t=topic)
        answer = answer[0].upper() + answer[1:]
        rows.append({"prompt": f"Tell me something about {topic}.", "chosen": f"{GREETING} {answer}",
                     "rejected": answer})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tuillm(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUILLM, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def dpo_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One DPO run on the demo through the CLI, shared by the tests below: the adapter folder and stderr."""
    folder = tmp_path_factory.mktemp("dpo")
    data = write_rows(folder / "pairs.jsonl", preference_rows(_TOPICS))
    adapter = folder / "adapter"
    out = tuillm("train", str(demo_hf_checkpoint()), "--method", "dpo", "--beta", "0.1", "--data", str(data),
                 "-o", str(adapter), "--rank", "8", "--alpha", "16", "--dropout", "0", "--max-len", "64",
                 "--batch-size", "4", "--lr", "2e-3", "--epochs", "1", "--eval-split", "0.2", "--save-every", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(adapter)
    return adapter, out.stderr


@pytest.mark.slow
def test_the_run_reports_dpo_and_writes_an_adapter(dpo_adapter: tuple[Path, str]) -> None:
    adapter, stderr = dpo_adapter
    assert "pairs.jsonl: 20 preference pairs, pairs format" in stderr
    assert "16 training preference pairs, 4 for eval; 4 steps" in stderr
    assert "step 4/4: " in stderr and "eval reward margin" in stderr
    log = [json.loads(line) for line in (adapter / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    # At step 1 the adapter is zero: the policy is the reference, so the loss is log 2 and no reward is won.
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-4) and log[0]["reward_margin"] == 0
    assert log[-1]["loss"] < 0.3 and log[-1]["reward_accuracy"] == 1.0 and log[-1]["reward_margin"] > 1
    assert log[-1]["eval_reward_accuracy"] == 1.0 and log[-1]["eval_loss"] < 0.3
    params = json.loads((adapter / "training.json").read_text())
    assert params["method"] == "dpo" and params["beta"] == 0.1 and params["steps"] == 4
    assert not (adapter / "checkpoints").exists()


def _answer_logp(model, tokenizer, prompt: str, answer: str) -> float:  # noqa: ANN001 - torch/transformers types
    """log p(answer | prompt) under the model's chat template, summed over the answer's tokens (and its end)."""
    import torch

    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)["input_ids"]
    assert full[: len(head)] == head
    ids = torch.tensor([full])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return float(logps[torch.arange(len(head) - 1, len(full) - 1), targets[len(head) - 1:]].sum())


@pytest.mark.slow
def test_the_held_out_margin_grows(dpo_adapter: tuple[Path, str]) -> None:
    """Pairs the run never saw: log p(chosen) - log p(rejected), before (the base) and after (base + adapter)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter, _ = dpo_adapter
    base = demo_hf_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    model.eval()

    def margins() -> list[float]:
        return [_answer_logp(model, tokenizer, r["prompt"], r["chosen"])
                - _answer_logp(model, tokenizer, r["prompt"], r["rejected"]) for r in preference_rows(_HELD_OUT)]

    with model.disable_adapter():
        before = margins()
    after = margins()
    assert all(a > b + 5 for a, b in zip(after, before, strict=True)), (before, after)
    assert min(after) > 0 > max(before), (before, after)  # the base prefers the plain answer; the tuned one not


@pytest.mark.slow
def test_the_merged_model_prefers_the_chosen_style_in_chat(dpo_adapter: tuple[Path, str], tmp_path: Path,
                                                           demo_gguf: Path) -> None:
    adapter, _ = dpo_adapter
    merged = tmp_path / "merged.gguf"
    out = tuillm("merge", str(demo_hf_checkpoint()), str(adapter), "-o", str(merged), "--type", "q8_0")
    assert out.returncode == 0, out.stderr[-3000:]

    def ask(model: Path, prompt: str) -> str:
        out = tuillm("chat", str(model), "--prompt", prompt, "--temp", "0", "--max-tokens", "16")
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    base_answer = ask(demo_gguf, "Tell me something about lamps.")
    assert GREETING not in base_answer, base_answer
    for prompt in ("Tell me something about lamps.", "Tell me something about dogs."):
        tuned_answer = ask(merged, prompt)
        assert tuned_answer.startswith(GREETING), tuned_answer


# --- the loop's DPO run on a tiny random model (fast) -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "llama")


def chat_pairs(rows: list[dict[str, str]]) -> list[dict[str, list[dict[str, str]]]]:
    """The same pairs in trl's conversational shape, the prompt implicit (the turn both sides start with)."""
    return [{side: [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r[side]}]
             for side in ("chosen", "rejected")} for r in rows]


def tiny_config(tiny: Path, tmp_path: Path, out: str) -> TrainConfig:
    data = [write_rows(tmp_path / "pairs.jsonl", preference_rows(_TOPICS[:8])),
            write_rows(tmp_path / "chat.jsonl", chat_pairs(preference_rows(_TOPICS[8:12])))]
    return TrainConfig(base=str(tiny), data=list(map(str, data)), output=str(tmp_path / out), method="dpo", beta=0.5,
                       rank=4, alpha=8, dropout=0.1, max_len=64, batch_size=2, grad_accum=2, lr=1e-3, epochs=2,
                       eval_fraction=0.2, eval_every=2, save_every=2, seed=3, device="cpu", dtype="float32")


def test_events_then_cancel_and_resume_give_the_same_curve(tiny: Path, tmp_path: Path) -> None:
    events: list = []
    full = train(tiny_config(tiny, tmp_path, "full"), emit=events.append)
    # 12 pairs: 10 train + 2 eval; 5 micro-batches of 2 per epoch, 2 per step: 3 steps per epoch, 5 in all.
    assert full.steps == 5
    logs = [e.message for e in events if isinstance(e, Log)]
    assert "pairs.jsonl: 8 preference pairs, pairs format" in logs
    assert "chat.jsonl: 4 preference pairs, chat pairs format" in logs
    assert any("10 training preference pairs, 2 for eval" in line for line in logs)
    names = {e.name for e in events if isinstance(e, Metric)}
    assert {"loss", "reward_margin", "reward_accuracy", "eval_loss", "eval_reward_margin",
            "eval_reward_accuracy", "tokens_per_s"} <= names
    assert [e.done for e in events if isinstance(e, Progress) and e.stage == "train"] == [1, 2, 3, 4, 5]

    cancel = threading.Event()

    def stop_after_step_3(event: object) -> None:
        if isinstance(event, Metric) and event.name == "loss" and event.step == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        train(tiny_config(tiny, tmp_path, "cut"), emit=stop_after_step_3, cancel=cancel)
    checkpoint = latest_checkpoint(tmp_path / "cut")
    assert checkpoint is not None and checkpoint.name == "step-0000003"
    # The method is in the checkpoint's fingerprint: a supervised run does not resume a DPO run's checkpoint.
    supervised = TrainConfig(**{**vars(tiny_config(tiny, tmp_path, "cut")), "method": "sft", "resume": True,
                                "data": [str(write_fact_dataset(tmp_path / "fact.jsonl", 12))]})
    with pytest.raises(TuillmError, match=r"other settings \(method\)"):
        train(supervised)
    config = tiny_config(tiny, tmp_path, "cut")
    config.resume = True
    resumed = train(config)
    assert resumed.steps == 5
    assert [r["loss"] for r in resumed.loss_log] == pytest.approx([r["loss"] for r in full.loss_log], abs=1e-5)
    assert [r["reward_margin"] for r in resumed.loss_log] == pytest.approx(
        [r["reward_margin"] for r in full.loss_log], abs=1e-5)
    assert json.loads((tmp_path / "cut" / "training.json").read_text())["method"] == "dpo"


def test_a_micro_batch_in_one_row_gives_the_losses_of_one_pair_a_row(tiny: Path, tmp_path: Path) -> None:
    """Packed in one row (CUDA's way, or --packing row), each side's log-probability is still its own: positions
    restart per sequence, and the summed log-probabilities are split back by sequence."""
    runs = {}
    for packing in ("each", "row"):
        config = tiny_config(tiny, tmp_path, packing)
        config.packing, config.dropout, config.max_steps, config.eval_fraction = packing, 0.0, 3, 0.0
        runs[packing] = train(config).loss_log
    for key in ("loss", "reward_margin", "reward_accuracy"):
        assert [r[key] for r in runs["row"]] == pytest.approx([r[key] for r in runs["each"]], abs=1e-4), key
    assert runs["row"][0]["loss"] == pytest.approx(math.log(2), abs=1e-5) and runs["row"][-1]["loss"] < math.log(2)


def test_the_loss_is_trls_sigmoid_dpo_loss() -> None:
    import torch

    from tuillm.core.train.dpo import dpo_loss

    # log-ratios: chosen +1, rejected -1; beta 0.5: -log sigmoid(0.5 * 2) = log(1 + e^-1).
    losses, chosen, rejected = dpo_loss(torch.tensor([[-1.0, -3.0]]), torch.tensor([[-2.0, -2.0]]), 0.5)
    assert float(losses[0]) == pytest.approx(math.log1p(math.exp(-1)))
    assert (float(chosen[0]), float(rejected[0])) == (0.5, -0.5)


def test_packed_log_probabilities_are_each_sequences_own(tiny: Path, tmp_path: Path) -> None:
    """Two sides packed in one row: each one's answer log-probability equals that of a forward over it alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuillm.core.train.dpo import pair_logps
    from tuillm.core.train.prepare import prepare_data

    config = tiny_config(tiny, tmp_path, "unused")
    pairs, _ = prepare_data(config, AutoTokenizer.from_pretrained(tiny))
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    with torch.no_grad():
        packed = pair_logps(model, pairs[:2], "cpu")
        for row, pair in zip(packed, pairs[:2], strict=True):
            for got, side in zip(row, (pair.chosen, pair.rejected), strict=True):
                ids = torch.tensor([side.input_ids])
                logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                labels = torch.tensor(side.labels[1:])
                scored = labels != -100
                alone = logps[scored].gather(1, labels[scored][:, None]).sum()
                assert float(got) == pytest.approx(float(alone), rel=1e-4, abs=1e-3)


@pytest.mark.cores(2)
@pytest.mark.parametrize(("batch_size", "grad_accum", "fsdp"), [(2, 2, False), (1, 1, False), (3, 1, True)])
def test_two_processes_follow_one_process(tiny: Path, tmp_path: Path, batch_size: int, grad_accum: int,
                                          fsdp: bool) -> None:
    """``--nproc 2`` (gloo): the step's pairs dealt out to two processes give one process's losses, rewards and
    held-out figures (float32, no dropout: they differ only in the order the gradient is summed). With one pair a
    step, the second process is dealt nothing and runs a row of weight 0 to join the all-reduce; under FSDP (three
    pairs a step: two rows and one) the process with fewer rows makes them up that way."""
    runs = {}
    for nproc in (1, 2):
        config = tiny_config(tiny, tmp_path, f"n{nproc}-{batch_size}")
        config.nproc, config.dropout, config.max_steps = nproc, 0.0, 4
        config.fsdp = fsdp and nproc > 1
        config.batch_size, config.grad_accum = batch_size, grad_accum
        runs[nproc] = train(config).loss_log
    assert len(runs[2]) == 4
    for key in ("loss", "reward_margin", "reward_accuracy", "tokens"):
        assert [r[key] for r in runs[2]] == pytest.approx([r[key] for r in runs[1]], rel=1e-4, abs=1e-6), key
    evals = [r["eval_loss"] for r in runs[2] if "eval_loss" in r]
    assert evals and evals == pytest.approx([r["eval_loss"] for r in runs[1] if "eval_loss" in r], rel=1e-4)
    assert runs[2][-1]["loss"] < runs[2][0]["loss"]
