"""A plain prompt: text (or token ids) continued as is, without the chat template.

Completions and Ollama's ``raw`` generate send one. A client that tokenized the prompt itself sends its token ids
(lm-eval's ``local-completions`` does, to score exactly the tokens it counts); they are checked against the loaded
model's vocabulary here, before llama.cpp sees them: an id past the vocabulary would read past its tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuillm.core.errors import TuillmError
from tuillm.core.llama.model import LlamaModel


@dataclass(frozen=True, slots=True)
class PlainPrompt:
    """The text to continue, or (``ids`` given) the token ids to continue; the text is then not used."""

    text: str = ""
    ids: tuple[int, ...] | None = None

    def tokens(self, model: LlamaModel) -> list[int]:
        """The prompt's tokens under ``model``: never none, which llama.cpp has nothing to continue from."""
        tokens = list(self.ids) if self.ids is not None else model.tokenize(self.text, add_bos=model.add_bos)
        if not tokens:
            raise TuillmError("the prompt is empty: there is nothing to continue")
        n_vocab = model.n_vocab
        bad = next((t for t in tokens if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise TuillmError(f"prompt: token {bad} is not in the model's vocabulary (0 to {n_vocab - 1})")
        return tokens


# What a reply continues: a conversation's messages (rendered by the chat template), or a plain prompt.
Prompt = list[dict[str, str]] | PlainPrompt
