"""Modules you can read in one sitting, functions that do one thing: the size limits of the code, checked.

A module over MODULE_LINES or a function over FUNCTION_LINES fails, unless a comment starting with
``# one piece:`` right above its ``def`` (or at the top of the module) says why it must stay whole.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("core", "convert", "tui")
MODULE_LINES = 400
FUNCTION_LINES = 60
EXCUSE = "# one piece:"


def _modules() -> list[Path]:
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def _excused(lines: list[str], def_line: int) -> bool:
    """Whether a ``# one piece:`` comment stands in the comment block right above line ``def_line`` (1-based)."""
    i = def_line - 2
    while i >= 0 and lines[i].strip().startswith(("#", "@")):
        if lines[i].strip().startswith(EXCUSE):
            return True
        i -= 1
    return False


def oversized(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    if len(lines) > MODULE_LINES and not any(line.startswith(EXCUSE) for line in lines[:20]):
        found.append(f"{path.relative_to(root)}: {len(lines)} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > FUNCTION_LINES and not _excused(lines, first):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}(): {length} lines")
    return found


def test_sources_were_found() -> None:
    assert len(_modules()) > 50


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_functions_fit_in_one_sitting(path: Path) -> None:
    assert oversized(path) == []


def test_the_check_catches_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES + 1))
    long = tmp_path / "long.py"
    long.write_text(f"def f():\n{body}\n")
    assert [s.split(" ", 1)[1] for s in oversized(long, tmp_path)] == [f"f(): {FUNCTION_LINES + 2} lines"]
    long.write_text(f"{EXCUSE} a state machine read top to bottom\ndef f():\n{body}\n")
    assert oversized(long, tmp_path) == []

