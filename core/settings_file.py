"""The settings file as text: read (bounded, decoded, parsed as TOML), and the paths written in it.

A relative path in the file (a ``models.dirs`` entry, a ``[model."..."]`` key) names a place beside the file, as
git reads the paths in its config: the same file means the same folders wherever tuillm is started (it followed
the current folder). ``~`` is expanded first, as a shell does. A path typed on the command line or in a dialog
still follows the current folder, as a shell's does.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from tuillm.core import paths

# A settings file is a few KiB (10,000 model folders, 1 MiB): a 100 MB one took seconds and a GiB to parse.
MAX_FILE_BYTES = 4 << 20


def read_file(file: Path) -> tuple[dict[str, Any] | None, str]:
    """The parsed settings file, or None and why not (in words, with the line where there is one)."""
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            return None, f"larger than {MAX_FILE_BYTES >> 20} MiB, not a settings file"
        # utf-8-sig: a byte-order mark (Notepad writes one) was "Invalid statement (at line 1, column 1)"
        return tomllib.loads(raw.decode("utf-8-sig")), ""
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc.__class__.__name__})"
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (line {raw[: exc.start].count(10) + 1}); save it as UTF-8"
    except RecursionError:  # arrays nested past the parser's depth
        return None, "nested too deeply"
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        return None, str(exc)


def base_folder(file: Path | None) -> Path:
    """The folder the relative paths of ``file`` (the XDG settings file for None) are read from: the one holding
    it, made absolute once (symlinks kept, as the file was named)."""
    return (file or paths.config_file()).absolute().parent


def file_path(text: str, base: Path) -> Path:
    """A path as the settings file writes it, read from ``base`` (``base_folder``): absolute, ``~`` expanded."""
    return base / paths.expand_user(text)
