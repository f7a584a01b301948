"""Constructs ``llama_cpp.Llama`` instances: the one place that knows the quirks of the llama.cpp build, and
keeps llama.cpp's own logging off the terminal.

The Makefile builds llama.cpp without AMX on x86-64, but a user's own (native) build may have it, so the guard
stays: on an AMX build the extra buffer types are turned off while the model loads.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


# --- llama.cpp log capture ----------------------------------------------------------------------------------------
# llama.cpp logs through one process-wide callback. We keep its last lines (to explain a failed load in one line)
# and print nothing: its noise would garble the CLI's stdout/stderr and the TUI's screen. Each line is numbered and
# notes the thread that logged it: a server's chat and embedding contexts (and the app's chat and a conversion's
# quality report) run llama.cpp on threads of their own, and a failure must be told with its own lines.
@dataclass(frozen=True)
class _Logged:
    number: int
    thread: int
    line: str


_LOGGED: deque[_Logged] = deque(maxlen=50)
_numbers = itertools.count(1)
_log_callback: Any = None


def install_log_capture() -> None:
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _capture(level: int, text: bytes, _user: Any) -> None:
        if level in (3, 4):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR (ggml.h: NONE, DEBUG, INFO, WARN, ERROR)
            line = text.decode("utf-8", errors="replace").strip()
            if line:
                _LOGGED.append(_Logged(next(_numbers), threading.get_ident(), line))

    _log_callback = _capture  # the C side keeps only a pointer: hold the function object
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def log_mark() -> int:
    """Where llama.cpp's log is now: ``last_llama_error(since=log_mark())`` before a call speaks of that call."""
    logged = _LOGGED
    return logged[-1].number if logged else 0


def last_llama_error(since: int = 0) -> str:
    """The most telling line llama.cpp logged after the mark ``since``, without its function-name prefix: of the
    lines this thread logged, if any (another thread's load or decode may have logged meanwhile)."""
    after = [entry for entry in list(_LOGGED) if entry.number > since]
    me = threading.get_ident()
    lines = [entry.line for entry in after if entry.thread == me] or [entry.line for entry in after]
    for line in lines:
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    for line in reversed(lines):
        if "error" in line.lower() or "failed" in line.lower():
            return line.split(": ", 1)[1] if ": " in line else line
    return lines[-1] if lines else ""


_build_lock = threading.Lock()


def amx_build() -> bool:
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


class _DeferredTemplate:
    """Stands in for llama-cpp-python's ``Jinja2ChatFormatter`` while a ``Llama`` is constructed.

    ``Llama.__init__`` compiles every chat template in the GGUF's metadata for chat handlers of its own, which
    tuillm never calls (templates render in ``core.chat.sandbox``, in a bounded child process). Jinja's compiler
    folds constants, so a hostile template such as ``{{ 'a' * 2000000000 }}`` would be evaluated right there,
    unbounded: gigabytes and a minute spent before the sandbox sees it, or the process killed for memory. The
    template is compiled only if one of those handlers is ever called (``create_chat_completion``, which tests
    use as a reference on the trusted demo model).
    """

    def __init__(self, formatter: Any, *args: Any, **kwargs: Any) -> None:
        self._make = lambda: formatter(*args, **kwargs).to_chat_handler()

    def to_chat_handler(self) -> Any:
        handler: Any = None

        def deferred(*args: Any, **kwargs: Any) -> Any:
            nonlocal handler
            if handler is None:
                handler = self._make()
            return handler(*args, **kwargs)

        return deferred


def new_llama(model_path: str, **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path, **kwargs)``, without compiling the file's chat templates in this process
    (``_DeferredTemplate``) and working around llama.cpp's AMX kernels.

    A llama.cpp built with AMX (Sapphire Rapids and later) dies with a general protection fault in
    ``ggml_backend_amx_mul_mat`` (``ldtilecfg``) on the first batch of more than one token, at least inside some
    VMs. llama-cpp-python has no argument for ``use_extra_bufts``, so on such builds we turn the extra buffer
    types off (AMX/repack; plain CPU kernels are used) by patching the default model params while constructing.
    """
    import llama_cpp
    import llama_cpp.llama as llama_module

    install_log_capture()
    formats = llama_module.llama_chat_format
    low = llama_module.llama_cpp
    # Module attributes, patched for the construction only: one construction at a time.
    with _build_lock:
        formatter, original = formats.Jinja2ChatFormatter, low.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = False
            return p

        formats.Jinja2ChatFormatter = functools.partial(_DeferredTemplate, formatter)
        if amx_build():
            low.llama_model_default_params = params
        try:
            return llama_cpp.Llama(model_path, **kwargs)
        finally:
            formats.Jinja2ChatFormatter, low.llama_model_default_params = formatter, original


# sys.stdout/stderr are process-wide: two loads at once (the A/B view) would restore each other's.
_REDIRECT_LOCK = threading.Lock()


def quiet_llama(model_path: str, **kwargs: Any) -> Any:
    """``new_llama`` that prints nothing, without touching the terminal's file descriptors.

    ``verbose=False`` would point fds 1 and 2 at /dev/null (dup2) for the whole load, blanking a TUI drawn on
    them. So the load runs verbose: llama.cpp's own log goes to the capture above, and the Python-level chatter of
    ``Llama.__init__`` is caught here. Afterwards ``verbose`` is turned off (no per-turn "prefix-match hit" lines).
    """
    install_log_capture()
    chatter = io.StringIO()
    with _REDIRECT_LOCK, contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        llm = new_llama(model_path, verbose=True, **kwargs)
    llm.verbose = False
    return llm
