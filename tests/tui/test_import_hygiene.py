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


def run_python(code: str, tmp_path: Path) -> dict:
    """Runs ``code`` in a fresh interpreter (HOME/XDG as this test's); its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_starting_the_app_imports_no_torch(tmp_path: Path) -> None:
    result = run_python(
        f"""
        import asyncio, importlib, json, sys
        import tuillm.tui.cli as cli
        # What `tuillm` imports before it opens the app: the CLI and every subcommand module it registers.
        for name in cli.COMMANDS:
            importlib.import_module(f"tuillm.tui.cli.{{name}}")
        from tuillm.tui.app import TuillmApp

        async def main():
            app = TuillmApp()
            async with app.run_test(size=(80, 24)) as pilot:
                pane = await app.pane("models")  # mounted after the first frame: its discovery starts then
                await app.workers.wait_for_complete()
                await pilot.pause()
                return [e.name for e in pane.result.entries]

        names = asyncio.run(main())
        print(json.dumps({{"names": names, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """,
        tmp_path,
    )
    assert "demo" in result["names"]  # the app really ran discovery, the path that reads GGUF headers
    assert result["heavy"] == []


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.checkpoints import tiny_random_checkpoint

    return tiny_random_checkpoint("llama", tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.mark.parametrize("command", ["models", "info", "convert", "chat"])
def test_headless_commands_import_no_torch(command: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    argv = {
        "models": ["models", "--json"],
        "info": ["info", "demo", "--json"],
        "convert": ["convert", str(tiny_checkpoint), "-o", str(tmp_path / "tiny.gguf"), "--type", "q8_0", "-q"],
        "chat": ["chat", "demo", "--prompt", "Hi", "--max-tokens", "2", "--temp", "0", "--json"],
    }[command]
    result = run_python(
        f"""
        import contextlib, io, json, sys
        from tuillm.tui.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main({argv!r})
        print(json.dumps({{"code": code, "out": out.getvalue(),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """,
        tmp_path,
    )
    assert result["code"] == 0, result["out"]
    assert result["out"].strip()  # the command did its work and printed it
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


# What the first frame must not wait for: numpy and gguf (the converter, the GGUF header's quant table), llama.cpp
# (loaded with a model, or by the Models pane's discovery on its worker), the API server's web stack.
FIRST_FRAME_FREE = ("numpy", "gguf", "yaml", "llama_cpp", "fastapi", "uvicorn", "starlette", "pydantic", "jinja2",
                    "huggingface_hub", "torch", "transformers", "peft")


def test_starting_the_app_leaves_heavy_imports_for_later(tmp_path: Path) -> None:
    result = run_python(
        f"""
        import json, sys
        from tuillm.tui.cli import build_parser
        build_parser()  # `tuillm` builds its whole parser (every subcommand's options) before it opens the app
        import tuillm.tui.app
        print(json.dumps({{"loaded": [m for m in {FIRST_FRAME_FREE!r} if m in sys.modules],
                          "app": "tuillm.tui.app" in sys.modules, "textual": "textual.app" in sys.modules}}))
        """,
        tmp_path,
    )
    assert result["app"] and result["textual"]  # the app's module and its front end did load
    assert result["loaded"] == []
