"""Does a converted GGUF compute what the HF original computes? Logits of both on the same tokens, compared.

The original runs in transformers (float32), the GGUF in llama.cpp with all logits kept
(``tuillm.core.llama.logits``: the only code that loads a Llama for this). torch and transformers are imported
only inside :func:`hf_logits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Original prose (written for this project) used by --report: varied vocabulary, numbers, a little code.
REPORT_TEXT = """\
The harbour town woke slowly. Fishing boats came back before dawn, their decks stacked with crates of cod and
mackerel, and the gulls followed them in long, complaining spirals. By seven the bakery on Quay Street had sold
its first tray of rye loaves, and the ferry to the island was loading cars, bicycles and a nervous goat.

Maria ran the small repair shop beside the ferry office. She fixed radios, outboard motors, and, more and more
often, laptops that had been dropped on wet stones. Her notebook listed every job with a date and a price: on
3 March she replaced a cracked screen for 85 euros; on 4 March she rebuilt a carburettor for 40. She liked work
that could be measured. When a machine failed, there was always a reason, and the reason could be found.

In the evenings she taught herself to program. Her first useful script counted the jobs in her notebook:

    jobs = [line.split(";") for line in open("jobs.txt")]
    total = sum(float(price) for _, _, price in jobs)
    print(f"{len(jobs)} jobs, {total:.2f} euros")

It was not elegant, but it worked, and it told her that March had been her best month in three years. Encouraged,
she wrote another script that warned her when a customer had not collected a repaired device after thirty days.
The warnings were polite, then firm, and finally they suggested that the device would be sold.

The island across the water had its own rhythm. Sheep grazed on the cliffs, the lighthouse keeper painted the
railings every spring, and the school had eleven pupils and one teacher who also drove the bus. When the winter
storms came, the ferry stopped for days at a time, and people learned again how to wait: they read, they mended
nets, they played cards by the stove and argued about the weather as if arguing could change it.

Science, the teacher liked to say, is the habit of checking. You make a guess, you work out what it predicts,
and then you look. If the prediction fails, the guess was wrong, however beautiful it seemed. The children
measured the tide every morning for a year and drew the curve on the classroom wall. By June they could say, to
within a few minutes, when the water would be highest, and they were prouder of that line than of anything else.
"""


def hf_logits(folder: Path, ids: list[int]) -> np.ndarray:
    """transformers logits (float32) of the HF checkpoint in ``folder`` for ``ids``."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress line owns the terminal
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def perplexity(logits: np.ndarray, ids: list[int]) -> float:
    """exp of the mean negative log-likelihood of ids[1:] given the logits at positions [:-1]."""
    return _perplexity(_log_softmax(logits[:-1]), ids)


def _perplexity(log_probs: np.ndarray, ids: list[int]) -> float:
    """``perplexity`` from log-softmaxed logits (rows past len(ids) - 1 are not read)."""
    nll = -log_probs[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(np.exp(nll.mean()))


@dataclass(frozen=True)
class Comparison:
    tokens: int
    top1_agreement: float  # fraction of positions where both argmax agree
    mean_kl: float  # mean KL(reference || test) per position, nats
    max_abs_diff: float
    ppl_reference: float
    ppl_test: float
    # For a quantized result: the perplexity of the f16 GGUF of the same checkpoint in llama.cpp, the baseline
    # a quant is judged against (it isolates the quantization from the small f16/engine differences).
    ppl_f16: float | None = None
    baseline_type: str = "f16"  # the 16-bit GGUF's type: bf16 for a bf16 checkpoint

    @property
    def ppl_ratio(self) -> float:
        return self.ppl_test / self.ppl_reference

    @property
    def ppl_ratio_f16(self) -> float | None:
        return self.ppl_test / self.ppl_f16 if self.ppl_f16 else None

    def lines(self) -> list[str]:
        lines = [f"top-1 agreement   {self.top1_agreement * 100:6.2f}% over {self.tokens} tokens",
                 f"mean KL divergence {self.mean_kl:.5f} nats",
                 f"perplexity        {self.ppl_test:.3f} vs {self.ppl_reference:.3f} for the original "
                 f"(ratio {self.ppl_ratio:.3f})"]
        if self.ppl_ratio_f16 is not None:
            lines.append(f"perplexity vs {self.baseline_type} {self.ppl_test:.3f} vs {self.ppl_f16:.3f} for the "
                         f"{self.baseline_type} GGUF (ratio {self.ppl_ratio_f16:.3f})")
        return lines


def compare(reference: np.ndarray, test: np.ndarray, ids: list[int]) -> Comparison:
    n_vocab = min(reference.shape[1], test.shape[1])  # llama.cpp may pad nothing; HF may pad the vocab
    ref, tst = reference[:, :n_vocab], test[:, :n_vocab]
    lp_ref, lp_tst = _log_softmax(ref), _log_softmax(tst)
    kl = (np.exp(lp_ref) * (lp_ref - lp_tst)).sum(axis=-1)
    return Comparison(
        tokens=len(ids),
        top1_agreement=float((ref.argmax(-1) == tst.argmax(-1)).mean()),
        mean_kl=float(kl.mean()),
        max_abs_diff=float(np.abs(ref - tst).max()),
        ppl_reference=_perplexity(lp_ref, ids),
        ppl_test=_perplexity(lp_tst, ids),
    )

