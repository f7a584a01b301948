"""The chat template renderer's own process: untrusted Jinja runs here, never in the app's process.

A template from a downloaded file is code. Jinja's ``ImmutableSandboxedEnvironment`` keeps it from Python's
internals, but not from spending time or memory: nested loops spin for hours, and one C-level operation
(``'a' * 2000000000``, a ``replace`` or ``join`` of megabytes) allocates gigabytes before any check after it can
run, and no thread can interrupt it. So templates compile and render in this child process
(``python -m tuillm.core.chat.sandbox``), which the app kills when the time budget is spent or the user stops, and
which bounds itself: an address-space limit makes any oversized allocation a ``MemoryError`` (nothing is
allocated), and an alarm ends a render that outlives its budget even if the app died. ``*`` and ``**`` are checked
before they compute, so the common size bomb gets its own clear line.

Protocol: one JSON object per line both ways. The child says ``{"ready": true}`` once started; then each request
``{"op": "compile" | "render", "source", "label", ...}`` gets ``{"text": ...}`` or ``{"error": one line}``.
It exits when its stdin closes (the app ended).
"""

from __future__ import annotations

import datetime
import json
import signal
import sys
from collections.abc import Mapping
from typing import Any

# A rendered prompt longer than this is a runaway template, not a chat: more than a million tokens.
MAX_PROMPT_CHARS = 4_000_000
# Far below any danger to the machine, far above what a prompt of MAX_PROMPT_CHARS needs.
MEMORY_LIMIT_BYTES = 512 * 2**20
# The largest integer ``**`` may produce (in bits): beyond it ``10 ** 10 ** 9`` would compute for minutes.
MAX_INT_BITS = 64 * 1024
_CACHE = 8  # compiled templates kept (the app asks for the same one every turn)


class Refused(Exception):
    """A template's failure in the words the user sees; ``own``: the template's words (``raise_exception``)."""

    def __init__(self, text: str, *, own: bool = False) -> None:
        super().__init__(text)
        self.own = own


class _OutOfTime(BaseException):
    """Raised by the alarm; a BaseException so no ``except Exception`` inside Jinja swallows it."""


def _raise_exception(message: object) -> None:
    # Templates call this to reject a conversation (e.g. "roles must alternate"); show their message.
    raise Refused(str(message), own=True)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _size_of_product(left: Any, right: Any) -> int:
    """Characters (or items) ``left * right`` would hold; 0 for numbers, which ``*`` keeps small."""
    if isinstance(left, int) and isinstance(right, str | list | tuple):
        left, right = right, left
    if isinstance(left, str | list | tuple) and isinstance(right, int):
        return len(left) * max(right, 0)
    return 0


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BudgetEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*" and _size_of_product(left, right) > MAX_PROMPT_CHARS:
                raise Refused(f"produced a runaway prompt (more than {MAX_PROMPT_CHARS} characters)")
            if (operator == "**" and isinstance(left, int) and isinstance(right, int)
                    and right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS):
                raise Refused(f"computes a number larger than {MAX_INT_BITS} bits")
            return super().call_binop(context, operator, left, right)

    # Same options as transformers' apply_chat_template, so templates written for HF render identically.
    env = BudgetEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


class Renderer:
    """Compiles and renders templates with the budget's checks (the child's loop runs one)."""

    def __init__(self) -> None:
        self._env = _environment()
        self._compiled: dict[str, Any] = {}

    def compile(self, source: str) -> Any:
        from jinja2 import TemplateError

        template = self._compiled.get(source)
        if template is None:
            try:
                template = self._env.from_string(source)
            except TemplateError as exc:
                raise Refused(f"does not compile: {_describe(exc)}") from None
            except (RecursionError, MemoryError, ValueError, TypeError) as exc:
                raise Refused(f"does not compile: {_describe(exc)}") from None
            if len(self._compiled) >= _CACHE:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[source] = template
        return template

    def render(self, source: str, variables: Mapping[str, Any]) -> str:
        from jinja2 import TemplateError
        from jinja2.exceptions import SecurityError

        template = self.compile(source)
        parts: list[str] = []
        size = 0
        try:
            # Streamed and counted, so a loop printing forever stops at the cap instead of growing.
            for chunk in template.generate(**variables):
                size += len(chunk)
                if size > MAX_PROMPT_CHARS:
                    raise Refused(f"produced a runaway prompt (more than {MAX_PROMPT_CHARS} characters)")
                parts.append(chunk)
        except Refused:
            raise
        except SecurityError as exc:
            raise Refused(f"refused by the sandbox: {exc}") from None
        except MemoryError:
            raise Refused(f"needs more than {MEMORY_LIMIT_BYTES // 2**20} MiB of memory") from None
        except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError,
                OverflowError, RecursionError, UnicodeError) as exc:
            # Plain Python errors raised from template expressions (e.g. `1/0`, `'a' + 1`).
            raise Refused(f"failed: {_describe(exc)}") from None
        text = "".join(parts)
        if not text.strip():
            raise Refused("renders an empty prompt")
        return text


def answer(renderer: Renderer, request: Mapping[str, Any]) -> dict[str, Any]:
    """The reply to one request: ``{"text": ...}`` or ``{"error": "chat template (label) ..."}``."""
    label = str(request.get("label", "template"))
    source = str(request.get("source", ""))
    try:
        if request.get("op") == "compile":
            renderer.compile(source)
            return {"text": ""}
        variables = {"messages": request.get("messages", []),
                     "add_generation_prompt": bool(request.get("add_generation_prompt", True)),
                     "bos_token": request.get("bos_token", ""), "eos_token": request.get("eos_token", "")}
        return {"text": renderer.render(source, variables)}
    except Refused as exc:
        first = (str(exc).strip().splitlines() or ["failed"])[0]
        # The template's own words come after a colon; ours read on from the label.
        return {"error": f"chat template ({label}){': ' if exc.own else ' '}{first}"}
    except MemoryError:
        return {"error": f"chat template ({label}) needs more than {MEMORY_LIMIT_BYTES // 2**20} MiB of memory"}


def _on_alarm(_signum: int, _frame: Any) -> None:
    raise _OutOfTime


def _limit_self() -> None:
    import resource

    for limit, value in ((resource.RLIMIT_AS, MEMORY_LIMIT_BYTES), (resource.RLIMIT_CORE, 0)):
        try:
            _soft, hard = resource.getrlimit(limit)
            resource.setrlimit(limit, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))
        except (ValueError, OSError):  # a platform without the limit: the app's kill still bounds the time
            pass
    # Ctrl-C is the app's to handle (it kills this process); a terminal's signals never reach a new session.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)


def main() -> None:
    """The child's loop: one request per line on stdin, one reply per line on stdout."""
    _limit_self()
    renderer = Renderer()
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            seconds = float(request.get("seconds", 2.0))
        except (ValueError, AttributeError):
            return  # not the app speaking: stop
        # Our own bound, in case the app is gone and cannot kill us: a little after the app's.
        signal.setitimer(signal.ITIMER_REAL, seconds + 0.5)
        try:
            reply = answer(renderer, request)
        except _OutOfTime:
            reply = {"error": f"chat template ({request.get('label', 'template')}) took longer than "
                              f"{seconds:g} s to render"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
