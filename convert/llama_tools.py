"""Where llama.cpp's command-line tools are: llama-quantize, llama-imatrix, llama-perplexity.

``make`` builds them from the llama.cpp inside the llama-cpp-python sdist of the installed version
(tools/build_llama_tools.sh) and copies them into the venv's bin folder beside a stamp naming that version: a tool
is taken from there only when the stamp matches the installed binding (a file written by one llama.cpp version
and read by another is the kind of mismatch that fails late). Else ``TUILLM_LLAMA_TOOLS`` may name a folder the
user built them in (the user's word stands for the version). Never a binary from PATH of unknown version.
"""

from __future__ import annotations

import os
import sysconfig
from importlib import metadata
from pathlib import Path

from tuillm.convert.errors import ConvertError

TOOLS = ("llama-quantize", "llama-imatrix", "llama-perplexity")
STAMP = "llama-tools.version"  # written by tools/build_llama_tools.sh: the llama-cpp-python version built
ENV = "TUILLM_LLAMA_TOOLS"


class ToolMissing(ConvertError):
    """A llama.cpp tool that is not built (or built for another version)."""


def binding_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return ""


def venv_bin() -> Path:
    return Path(sysconfig.get_path("scripts"))


def find_tool(name: str, *, bin_dir: Path | None = None) -> Path:
    """The path of llama.cpp's ``name`` tool, or a one-line ToolMissing that says what to do."""
    if name not in TOOLS:
        raise ValueError(f"not a llama.cpp tool tuillm builds: {name}")
    folder = venv_bin() if bin_dir is None else bin_dir
    candidate = folder / name
    version = binding_version()
    stale = ""
    if _runnable(candidate):
        try:
            built = (folder / STAMP).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            built = ""
        if built and built == version:
            return candidate
        stale = f" (the one in {folder} was built for llama-cpp-python {built or 'an unknown version'}, " \
                f"{version or 'none'} is installed)"
    env = os.environ.get(ENV, "").strip()
    if env:
        user = Path(os.path.expanduser(env)) / name
        if _runnable(user):
            return user
        raise ToolMissing(f"{name} is not in {ENV}={env}: build it there, or unset {ENV} and run `make`")
    raise ToolMissing(f"{name} (llama.cpp's tool) is not built{stale}: run `make` in the tuillm checkout "
                      f"(it builds {', '.join(TOOLS)} once and caches them), or set {ENV} to a folder with them")


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
