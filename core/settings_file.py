"""The settings file as text: read (bounded, decoded, parsed as TOML), and the paths written in it.

A relative path in the file (a ``models.dirs`` entry, a ``[model."..."]`` key) names a place beside the file, as
git reads the paths in its config: the same file means the same folders wherever tuillm is started (it followed
the current folder). ``~`` is expanded first, as a shell does. A path typed on the command line or in a dialog
still follows the current folder, as a shell's does.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from tuillm.core import paths
from tuillm.core.text import shown

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
    # A symlinked file (~/.config/tuillm/config.toml -> ~/dotfiles/tuillm.toml) reads its relative names from the
    # link's folder, not the target's: the name the user, the docs and the Settings dialog use is the link's, the
    # same text means the same folders whether or not the file is linked, and one dotfile linked on several machines
    # names each machine's ~/.config/tuillm/models. Saving writes through the link (``write_target``).
    return (file or paths.config_file()).absolute().parent


def file_path(text: str, base: Path) -> Path:
    """A path as the settings file writes it, read from ``base`` (``base_folder``): absolute, ``~`` expanded."""
    return base / paths.expand_user(text)


def _is_folder_name(entry: Any) -> bool:
    """Whether a ``models.dirs`` entry can name a folder: "" was the folder tuillm started in, a NUL made every
    scan of it fail, and a number or a table is no path."""
    return isinstance(entry, str) and bool(entry.strip()) and "\0" not in entry


def dir_entries(dirs: Any) -> tuple[list[str], list[tuple[int, Any]]] | None:
    """``models.dirs`` as read: its folder names and its other entries (numbered from 1), or None for a value that
    is no list. One string is taken as a list of one: ``dirs = "~/models"`` means one folder, as OLLAMA_MODELS
    names one, and refusing it put the default folders in its place at the next save."""
    if isinstance(dirs, str):
        dirs = [dirs]
    if not isinstance(dirs, list):
        return None
    return [d for d in dirs if _is_folder_name(d)], [(n, d) for n, d in enumerate(dirs, 1) if not _is_folder_name(d)]


def dirs_as_written(dirs: list[Path], written: Any, base: Path) -> list[str]:
    """``models.dirs`` to save: each folder as the file wrote it (relative, ``~``: a save of any other setting
    turned the user's ``"models"`` into ``/home/u/.config/tuillm/models``), a folder the file did not have as an
    absolute path. ``written`` is the value read from the file, ``base`` its folder (``base_folder``)."""
    spellings: dict[Path, list[str]] = {}  # each folder -> the entries naming it, in the file's order
    for entry in (dir_entries(written) or ([], []))[0]:
        spellings.setdefault(file_path(entry, base), []).append(entry)
    return [spelled.pop(0) if (spelled := spellings.get(d)) else str(d) for d in dirs]


def model_tables_as_written(ours: dict[str, dict[str, Any]], written: Any, base: Path,
                            our_keys: Collection[str]) -> dict[str, Any]:
    """The ``[model."..."]`` tables to save. ``ours``: each model's absolute path -> the values of ``our_keys`` it
    has (none: its table keeps only the user's other keys, or goes); ``written``: the [model] table read from the
    file. A model the file named is written under that name (relative, ``~``), in its place, with the keys of its
    table that are not ours; names that are one model in different spellings become one table (the first name, the
    later tables' keys winning, as ``load_config`` read them); a value that is no table is kept as written."""
    tables: dict[str, Any] = {}  # the file's names in its order -> the table to write
    names: dict[str, str] = {}  # absolute path -> the first name the file gave it
    for name, table in (written.items() if isinstance(written, dict) else ()):
        if not isinstance(table, dict):
            tables[name] = table
            continue
        first = names.setdefault(str(file_path(name, base)), name)
        tables.setdefault(first, {}).update((k, v) for k, v in table.items() if k not in our_keys)
    for model, values in ours.items():
        name = names.get(model, model)
        tables[name] = {**(tables.get(name) if isinstance(tables.get(name), dict) else {}), **values}
    return {name: table for name, table in tables.items() if table != {}}


_ABSENT = object()  # a key one side of a merge does not have


def merged(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The file to save: ``ours`` (what the app writes) merged with ``theirs`` (the file on disk now), key by key
    through the tables, against ``base`` (what the app read or last wrote). A key the app left as it was takes the
    file's value (a hand edit or deletion made while the app ran is kept); a key the app changed takes the app's (the
    user just saved it); a key the app removed goes unless the file changed it too; a key only the file has stays."""
    out: dict[str, Any] = {}
    for key in [*theirs, *(k for k in ours if k not in theirs)]:  # the file's order, then the app's new keys
        b, o, t = base.get(key, _ABSENT), ours.get(key, _ABSENT), theirs.get(key, _ABSENT)
        if o == b or (o is _ABSENT and t != b):
            value = t
        elif isinstance(o, dict) and (isinstance(t, dict) or t is _ABSENT):
            # A table both sides touched: its keys are merged, so a hand edit beside the app's change is kept.
            value = merged(b if isinstance(b, dict) else {}, o, t if isinstance(t, dict) else {})
            value = _ABSENT if value == {} and t is _ABSENT else value
        else:
            value = o
        if value is not _ABSENT:
            out[key] = value
    return out


def merge_base(read: dict[str, Any], written: dict[str, Any], tables: Collection[str]) -> dict[str, Any]:
    """The base of ``merged`` for the file ``read``: with the keys of ``tables`` it lacks as a save fills them in
    (``written``): a default filled in is no change of the app's, and took the place of a key added by hand."""
    base = dict(read)
    for name in tables:
        if isinstance(read.get(name, {}), dict) and isinstance(written.get(name), dict):
            base[name] = {**written[name], **read.get(name, {})}
    return base


def encoded(text: str) -> bytes:
    """The file's text as UTF-8; an OSError (EILSEQ), naming the text around it, for a character UTF-8 has not: a
    folder named in bytes that are not UTF-8 (lone surrogates) raised past the callers' OSError handlers."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # named by the text around its first such byte, in its line
        near = text[max(text.rfind("\n", 0, exc.start) + 1, exc.start - 40): exc.end + 20].split("\n")[0].strip()
        raise OSError(errno.EILSEQ, f"{shown(near)}: not UTF-8, which the settings file cannot hold") from None


def backup_path(file: Path) -> Path:
    """Where ``save_config`` keeps an old file it could not read: beside it (beside a symlink's target)."""
    target = Path(os.path.realpath(file))
    return target.with_name(target.name + ".bak")


def write_target(file: Path) -> Path:
    """The file a save replaces: where ``file`` leads through symlinks, as git and editors write through a link (a
    settings file kept in a dotfiles repository and linked into ~/.config stays linked, and the repository gets the
    change); the link itself was replaced by a plain file. An OSError for a loop of links."""
    target = Path(os.path.realpath(file))
    if target.is_symlink():  # realpath stops at a loop and returns a link of it
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(file))
    return target


def not_read(file: Path, named: bool) -> tuple[bool, str | None]:
    """Whether ``file`` is a regular file to read, and if not, why (None: nothing to say, the XDG file not made yet,
    or a link to a file not made yet: the defaults are the settings). ``named``: the user named it (--config).
    ``Path.is_file`` raised for a name too long and for a folder it may not look in: a traceback at start."""
    try:
        st = os.stat(file)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False, "a loop of symbolic links"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False, "no such config file" if named else None
        return False, f"cannot read ({exc.strerror or exc.__class__.__name__})"
    except ValueError:  # a NUL in the name
        return False, "no such config file"
    if stat.S_ISREG(st.st_mode):
        return True, None
    return False, "not a regular file"
