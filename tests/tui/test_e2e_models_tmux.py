"""End to end: the Models pane of the real ``tuillm --config PATH`` in tmux at 80x24, with the keyboard alone:
filter, details, a per-model context, load for chat, settings."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from tests.ggufs import write_tiny_gguf
from tests.tui.test_e2e_tmux import Tmux, demo_row, line_from_bottom, tuillm_binary
from tuillm.core.paths import demo_model_path

pytestmark = pytest.mark.slow

ENV_KEYS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS",
            "HF_HUB_OFFLINE")


def row_of(screen: str, name: str) -> str | None:
    return next((line for line in screen.splitlines() if line.split()[:1] == [name]), None)


def test_models_flow_with_the_keyboard(isolated_home: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_gguf(models / "tiny-extra.gguf")
    config = tmp_path / "my-settings.toml"
    config.write_text(f'[models]\ndirs = ["{models}"]\n[load]\nctx = 2048\n')
    tmux = Tmux(isolated_home / "exit-status")
    try:
        tmux.start([tuillm_binary(), "--config", str(config)], {k: os.environ[k] for k in ENV_KEYS})
        tmux.wait_for(lambda s: "Enter sends" in s and "Quit" in line_from_bottom(s, 1), "the Chat pane")
        tmux("send-keys", "-t", "main", "F3")
        # --config was read: the folder and the context come from that file. (Rows, summary and the hardware
        # line waited for together: one screen with all of them, whatever order the frames came in.)
        screen = tmux.wait_for(lambda s: demo_row(s) is not None and row_of(s, "tiny-extra") is not None
                               and "2 models · est. at 2K ctx" in s
                               and any(line.strip().startswith("RAM") and "free of" in line
                                       for line in s.splitlines()),
                               "both models, the summary and the hardware line")
        header = next(line for line in screen.splitlines() if line.lstrip().startswith("Name"))
        assert header.split() == ["Name", "Arch", "Params", "Quant", "Size", "Context", "Est.", "mem", "Fit"]
        assert row_of(screen, "demo").split()[-1] == "fits"

        # Keys typed after one that moves the focus go where the focus was when they arrived (Textual forwards
        # each key on arrival), so each step waits for the screen to show the focus has moved.
        tmux("send-keys", "-t", "main", "/")
        tmux.wait_for(lambda s: "Type to filter" in s, "the filter taking the keys")
        tmux("send-keys", "-t", "main", "dem")  # filter as you type
        tmux.wait_for(lambda s: row_of(s, "tiny-extra") is None and "1 of 2 models" in s and demo_row(s) is not None
                      and "demo: largest context that fits" in s, "the filter, the demo's row and its advice")
        tmux("send-keys", "-t", "main", "Enter")  # back to the table
        tmux.wait_for(lambda s: "i info" in s, "the table taking the keys")
        tmux("send-keys", "-t", "main", "i")
        screen = tmux.wait_for(lambda s: "Esc closes" in s and "found in" in s, "the details")
        assert any("found in" in line and "demo" in line for line in screen.splitlines())
        tmux("send-keys", "-t", "main", "Escape")
        tmux.wait_for(lambda s: "Esc closes" not in s, "the details closing")
        tmux("send-keys", "-t", "main", "e")  # its own load settings
        tmux.wait_for(lambda s: "Load settings:" in s and "Context (tokens)" in s, "the load settings form")
        tmux("send-keys", "-t", "main", "1024", "Enter")
        tmux.wait_for(lambda s: "load settings kept" in s, "the settings saved")
        saved = tomllib.loads(config.read_text())
        assert saved["model"][str(demo_model_path())]["ctx"] == 1024

        tmux("send-keys", "-t", "main", "Enter")  # chat with it: loaded at its own context
        screen = tmux.wait_for(lambda s: "ctx 0/1024" in line_from_bottom(s, 2), "the demo loaded for chat")
        assert "Enter sends" in screen

        tmux("send-keys", "-t", "main", "F9")
        tmux.wait_for(lambda s: "Settings  (Ctrl+S saves" in s and "Model folders" in s, "the settings screen")
        tmux("send-keys", "-t", "main", "Escape")
        tmux.wait_for(lambda s: "Settings  (Ctrl+S saves" not in s, "the settings closing")

        tmux.quit()
    finally:
        tmux.kill()
