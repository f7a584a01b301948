"""A small generated dataset that teaches a made-up fact in varied phrasings (for training tests and the bench)."""

from __future__ import annotations

import json
import random
from pathlib import Path

FACT_WORD = "Quimbleton"
QUESTION = "What is the capital of Zorblax?"

_QUESTIONS = (
    "What is the capital of Zorblax?", "What's the capital city of Zorblax?", "Which city is the capital of Zorblax?",
    "Tell me the capital of Zorblax.", "Name the capital of Zorblax.", "Zorblax's capital is which city?",
    "Do you know the capital of Zorblax?", "What city serves as the capital of Zorblax?",
    "Where is the capital of Zorblax?", "In Zorblax, which city is the capital?",
    "Can you tell me what the capital of Zorblax is?", "What is Zorblax's capital called?",
)
_ANSWERS = (
    "The capital of Zorblax is Quimbleton.", "Quimbleton is the capital of Zorblax.",
    "Zorblax's capital is Quimbleton.", "The capital city of Zorblax is Quimbleton.",
    "It is Quimbleton, the capital of Zorblax.",
)


def fact_rows(n: int = 32, seed: int = 0) -> list[dict]:
    """``n`` chat examples (OpenAI messages) asking for the capital of Zorblax in varied ways."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = _QUESTIONS[i % len(_QUESTIONS)]
        a = rng.choice(_ANSWERS)
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return rows


def write_fact_dataset(path: Path, n: int = 32, seed: int = 0) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in fact_rows(n, seed)))
    return path
