"""Heavy or front-end imports must not leak: checked in fresh interpreters, since this test process has
imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "peft")
REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, tmp_path: Path) -> dict:
    """Runs ``code`` in a fresh interpreter (HOME/XDG as this test's); its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_starting_the_app_imports_no_torch(tmp_path: Path) -> None:
    result = run_python(
        f"""
        import asyncio, importlib, json, pkgutil, sys
        import tuillm.tui.cli
        import tuillm.tui.cli as commands
        # What `tuillm` imports before it opens the app: the CLI and every subcommand module it registers.
        for mod in pkgutil.iter_modules(commands.__path__):
            importlib.import_module(f"tuillm.tui.cli.{{mod.name}}")
        from tuillm.tui.app import TuillmApp

        async def main():
            app = TuillmApp()
            async with app.run_test(size=(80, 24)) as pilot:
                await app.workers.wait_for_complete()
                await pilot.pause()
                pane = app.query_one("#pane-models")
                return [e.name for e in pane.result.entries]

        names = asyncio.run(main())
        print(json.dumps({{"names": names, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """,
        tmp_path,
    )
    assert "demo" in result["names"]  # the app really ran discovery, the path that reads GGUF headers
    assert result["heavy"] == []


def test_models_command_imports_no_torch(tmp_path: Path) -> None:
    import tuillm.tui.cli as cli

    missing = [name for name in cli.COMMANDS
               if not (REPO / "tui" / "cli" / f"{name}.py").is_file()]
    if missing:
        pytest.skip(f"the CLI cannot start until these command modules exist: {', '.join(missing)}")
    result = run_python(
        f"""
        import contextlib, io, json, sys
        from tuillm.tui.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["models", "--json"])
        print(json.dumps({{"code": code, "out": out.getvalue(),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """,
        tmp_path,
    )
    assert result["code"] == 0
    assert "demo" in result["out"]
    assert result["heavy"] == []


def test_core_and_convert_import_no_front_end_or_torch(tmp_path: Path) -> None:
    result = run_python(
        """
        import importlib, json, pkgutil, sys
        import tuillm.core, tuillm.convert
        culprits = {}
        for package in (tuillm.core, tuillm.convert):
            for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(mod.name)
                for banned in ("textual", "rich", "torch", "transformers", "peft"):
                    if banned in sys.modules and banned not in culprits:
                        culprits[banned] = mod.name  # the first module after whose import it appeared
        count = sum(1 for p in (tuillm.core, tuillm.convert) for _ in pkgutil.walk_packages(p.__path__))
        print(json.dumps({"culprits": culprits, "modules": count}))
        """,
        tmp_path,
    )
    assert result["modules"] >= 5  # the walk found the packages' modules
    assert result["culprits"] == {}
