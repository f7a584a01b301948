"""Chat templates: the Jinja template a GGUF carries (``tokenizer.chat_template``) turned into a prompt string.

A template comes from a downloaded file, so it is untrusted code with a budget: it compiles and renders only in
Jinja's ``ImmutableSandboxedEnvironment`` (no underscore attributes, no mutation of the messages), inside a child
process (``core.chat.sandbox``) with a memory limit, and this side waits at most ``TIME_LIMIT_S`` and kills it at
once when the caller's stop is set (Ctrl-C, Esc, quitting). A thread cannot interrupt one long C-level operation of
a template (a multi-gigabyte ``replace`` or ``join``), a process can be killed: that is why it is a process. The
children are kept between renders (a round trip costs well under a millisecond; starting one about 0.1 s), one per
concurrent render, and end with the app (their stdin closes) or on their own alarm.
Anything that goes wrong is one ``ChatTemplateError`` line naming the template.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tuillm.core.chat.sandbox import MAX_PROMPT_CHARS
from tuillm.core.errors import TuillmError
from tuillm.core.text import safe_line

__all__ = ["CHATML_TEMPLATE", "MAX_PROMPT_CHARS", "TIME_LIMIT_S", "ChatTemplate", "ChatTemplateError",
           "TemplateStopped", "load_template", "read_gguf_template", "read_template_file"]

# Used when a model carries no template at all: ChatML is what most small instruct models (SmolLM, Qwen) speak.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TIME_LIMIT_S = 2.0  # a real template renders in milliseconds
MAX_TEMPLATE_BYTES = 1 << 20  # real templates are a few KiB (the largest known, tool-calling ones, tens of KiB)
_START_LIMIT_S = 30.0  # starting a renderer on a loaded machine (not the template's time)
_POLL_S = 0.05  # how often a waiting render looks at the stop flag
_KEEP = 4  # idle renderers kept


class ChatTemplateError(TuillmError):
    """A chat template that does not compile, fails, exceeds its budget, or tries what the sandbox forbids."""

    def __init__(self, message: str) -> None:
        # The text quotes the template (its raise_exception words, its syntax): no escape sequence gets through.
        super().__init__(safe_line(message))


class TemplateStopped(ChatTemplateError):
    """The caller's stop ended a render (not the template's fault)."""


class _Stop(Exception):
    pass


class _Late(Exception):
    pass


class _Child:
    """One renderer process and its pipes (used by one thread at a time)."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        # A new session: the terminal's Ctrl-C and hang-up go to the app, which decides; stderr is not ours to show.
        self.proc = subprocess.Popen([sys.executable, "-m", "tuillm.core.chat.sandbox"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        self._pending = b""

    def usable(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def kill(self) -> None:
        if self.owner != os.getpid():
            return  # a forked copy of the handle: the process is the parent's
        self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.proc.wait()

    def ask(self, request: Mapping[str, Any], deadline: float, stop: threading.Event | None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode("ascii") + b"\n")
        self.proc.stdin.flush()
        return self.read(deadline, stop)

    def read(self, deadline: float, stop: threading.Event | None) -> dict[str, Any]:
        """The next line from the child; ``_Stop`` / ``_Late`` / ``EOFError`` when it does not come."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks = [self._pending]
        while b"\n" not in chunks[-1]:
            if stop is not None and stop.is_set():
                raise _Stop
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Late
            if select.select([fd], [], [], min(_POLL_S, left))[0]:
                data = os.read(fd, 1 << 20)
                if not data:
                    raise EOFError
                chunks.append(data)
        line, _, self._pending = b"".join(chunks).partition(b"\n")
        return json.loads(line)


_lock = threading.Lock()
_idle: list[_Child] = []


def _take(stop: threading.Event | None) -> _Child:
    with _lock:
        while _idle:
            child = _idle.pop()
            if child.usable():
                return child
            child.kill()
    child = _Child()
    try:
        child.read(time.monotonic() + _START_LIMIT_S, stop)  # {"ready": true}
    except BaseException:
        child.kill()
        raise
    return child


def _give_back(child: _Child) -> None:
    with _lock:
        if child.usable() and len(_idle) < _KEEP:
            _idle.append(child)
            return
    child.kill()


@atexit.register
def _end_all() -> None:
    with _lock:
        children, _idle[:] = list(_idle), []
    for child in children:
        child.kill()


def _run(request: dict[str, Any], label: str, stop: threading.Event | None) -> str:
    """Sends ``request`` to a renderer; the text, or the one-line error."""
    try:
        child = _take(stop)
    except _Stop:
        raise TemplateStopped(f"chat template ({label}): stopped") from None
    except (_Late, EOFError, OSError, ValueError) as exc:
        raise ChatTemplateError(f"chat template ({label}) could not be rendered: the renderer did not start "
                                f"({type(exc).__name__})") from None
    try:
        reply = child.ask(request, time.monotonic() + TIME_LIMIT_S, stop)
    except _Stop:
        child.kill()
        raise TemplateStopped(f"chat template ({label}): stopped") from None
    except _Late:
        child.kill()
        raise ChatTemplateError(f"chat template ({label}) took longer than {TIME_LIMIT_S:g} s to render") from None
    except (EOFError, OSError, ValueError):
        # The child died (a signal, a native crash) or said something unreadable: it is not reused.
        child.kill()
        raise ChatTemplateError(f"chat template ({label}) could not be rendered: the renderer ended") from None
    except BaseException:  # KeyboardInterrupt in a caller's thread: never leave a render spinning
        child.kill()
        raise
    _give_back(child)
    if "error" in reply:
        raise ChatTemplateError(str(reply["error"]))
    return str(reply.get("text", ""))


class ChatTemplate:
    """A template checked to compile; ``render`` is the only way it runs."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "", name: str = "gguf",
                 model: str = "") -> None:
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        # How errors name it: which template, and of which model when known.
        self.label = f"{name} of {model}" if model else name
        _run({"op": "compile", "source": source, "label": self.label, "seconds": TIME_LIMIT_S}, self.label, None)

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True,
               stop: threading.Event | None = None) -> str:
        """The prompt for ``messages``; within ``TIME_LIMIT_S`` and ``MAX_PROMPT_CHARS``, or a
        ``ChatTemplateError`` (``TemplateStopped`` when ``stop`` was set first)."""
        plain = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        request = {"op": "render", "source": self.source, "label": self.label, "messages": plain,
                   "add_generation_prompt": add_generation_prompt, "bos_token": self.bos_token,
                   "eos_token": self.eos_token, "seconds": TIME_LIMIT_S}
        return _run(request, self.label, stop)


def load_template(
    metadata: Mapping[str, str],
    *,
    override: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    model: str = "",
) -> ChatTemplate:
    """The template to use: the user's ``override`` if given, else the GGUF's, else ChatML. ``model`` (a file
    name) is how its errors name the model."""
    tokens = {"bos_token": bos_token, "eos_token": eos_token, "model": model}
    if override:
        return ChatTemplate(override, name="override", **tokens)
    source = metadata.get("tokenizer.chat_template")
    if source:
        return ChatTemplate(source, name="gguf", **tokens)
    return ChatTemplate(CHATML_TEMPLATE, name="chatml (default)", **tokens)


def read_gguf_template(path: str) -> str | None:
    """``tokenizer.chat_template`` of a GGUF file, read with gguf's reader (no model load)."""
    from gguf import GGUFReader

    reader = GGUFReader(path, "r")
    field = reader.get_field("tokenizer.chat_template")
    if field is None:
        return None
    value = field.contents()
    return value if isinstance(value, str) else None


def read_template_file(path: str) -> str:
    """A chat template a user names (``--template FILE``): a regular UTF-8 file of at most ``MAX_TEMPLATE_BYTES``;
    one line otherwise (a FIFO, /dev/zero or a huge file would hang or fill memory)."""
    from tuillm.core.files import read_bounded

    shown = f"template {safe_line(path)}"
    data = read_bounded(path, MAX_TEMPLATE_BYTES, shown=shown, limit_of="a chat template")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatTemplateError(f"{shown}: not UTF-8 text") from None
