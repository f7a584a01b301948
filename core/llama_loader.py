"""Constructs ``llama_cpp.Llama`` instances: the one place that knows the quirks of the llama.cpp build.

The Makefile builds llama.cpp without AMX on x86-64, but a user's own (native) build may have it, so the guard
stays: on an AMX build the extra buffer types are turned off while the model loads.
"""

from __future__ import annotations

import threading
from typing import Any

_build_lock = threading.Lock()


def _amx_build() -> bool:
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


def new_llama(model_path: str, **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path, **kwargs)``, working around llama.cpp's AMX kernels.

    A llama.cpp built with AMX (Sapphire Rapids and later) dies with a general protection fault in
    ``ggml_backend_amx_mul_mat`` (``ldtilecfg``) on the first batch of more than one token, at least inside some
    VMs. llama-cpp-python has no argument for ``use_extra_bufts``, so on such builds we turn the extra buffer
    types off (AMX/repack; plain CPU kernels are used) by patching the default model params while constructing.
    """
    import llama_cpp
    import llama_cpp.llama as llama_module

    if not _amx_build():
        return llama_cpp.Llama(model_path, **kwargs)
    low = llama_module.llama_cpp
    with _build_lock:
        original = low.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = False
            return p

        low.llama_model_default_params = params
        try:
            return llama_cpp.Llama(model_path, **kwargs)
        finally:
            low.llama_model_default_params = original
