"""Chat templates: the Jinja template a GGUF carries (``tokenizer.chat_template``) turned into a prompt string.

A template comes from a downloaded file, so it is untrusted code: it is compiled and rendered only in Jinja's
``ImmutableSandboxedEnvironment`` (no underscore attributes, no mutation of the messages, bounded ``range``).
Anything the sandbox refuses, and any other template failure, becomes one ``ChatTemplateError`` line.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from tuillm.core.errors import TuillmError

# Used when a model carries no template at all: ChatML is what most small instruct models (SmolLM, Qwen) speak.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A rendered prompt longer than this is a runaway template (a loop printing forever), not a chat.
MAX_PROMPT_CHARS = 8_000_000


class ChatTemplateError(TuillmError):
    """A chat template that does not compile, fails, or tries something the sandbox forbids."""


def _raise_exception(message: str) -> None:
    # Templates call this to reject a conversation (e.g. "roles must alternate"); show their message.
    raise ChatTemplateError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Same options as transformers' apply_chat_template, so templates written for HF render identically.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """A compiled template; ``render`` is the only way it runs."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "", name: str = "gguf") -> None:
        from jinja2 import TemplateError

        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _environment().from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template ({name}) does not compile: {_describe(exc)}") from None

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        from jinja2 import TemplateError
        from jinja2.exceptions import SecurityError

        plain = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        try:
            parts: list[str] = []
            size = 0
            # Streamed so a template that loops forever printing is stopped instead of eating memory.
            for chunk in self._template.generate(
                messages=plain,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            ):
                size += len(chunk)
                if size > MAX_PROMPT_CHARS:
                    raise ChatTemplateError(f"chat template ({self.name}) produced a runaway prompt")
                parts.append(chunk)
        except ChatTemplateError:
            raise
        except SecurityError as exc:
            raise ChatTemplateError(f"chat template ({self.name}) refused by the sandbox: {exc}") from None
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template ({self.name}) failed: {_describe(exc)}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError,
                OverflowError, RecursionError, MemoryError) as exc:
            # Plain Python errors raised from template expressions (e.g. `1/0`, `'a' + 1`).
            raise ChatTemplateError(f"chat template ({self.name}) failed: {_describe(exc)}") from None
        return "".join(parts)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def load_template(
    metadata: Mapping[str, str],
    *,
    override: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> ChatTemplate:
    """The template to use: the user's ``override`` if given, else the GGUF's, else ChatML."""
    if override:
        return ChatTemplate(override, bos_token=bos_token, eos_token=eos_token, name="override")
    source = metadata.get("tokenizer.chat_template")
    if source:
        return ChatTemplate(source, bos_token=bos_token, eos_token=eos_token, name="gguf")
    return ChatTemplate(CHATML_TEMPLATE, bos_token=bos_token, eos_token=eos_token, name="chatml (default)")


def read_gguf_template(path: str) -> str | None:
    """``tokenizer.chat_template`` of a GGUF file, read with gguf's reader (no model load)."""
    from gguf import GGUFReader

    reader = GGUFReader(path, "r")
    field = reader.get_field("tokenizer.chat_template")
    if field is None:
        return None
    value = field.contents()
    return value if isinstance(value, str) else None
