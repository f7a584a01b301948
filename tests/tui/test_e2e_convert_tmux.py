"""End to end: the Convert pane of the real ``tuillm`` in tmux at 80x24, with the keyboard alone: the demo
checkpoint to q8_0, then the new file in the Models pane."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.checkpoints import demo_hf_checkpoint
from tests.tui.test_e2e_tmux import Tmux, line_from_bottom, tuillm_binary

pytestmark = pytest.mark.slow

ENV_KEYS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS",
            "HF_HUB_OFFLINE")


def shows_folder(screen: str, folder: Path) -> bool:
    """The To field holds ``folder``: all of it, or as much as fits at 80 columns (the tmp path's length varies)."""
    line = next((line.strip() for line in screen.splitlines() if line.strip().startswith("To ")), "")
    shown = line.removeprefix("To").rstrip(" ▁▂▃▄▅▆▇█").strip()  # less the pane's scroll bar
    return len(shown) >= min(len(str(folder)), 40) and str(folder).startswith(shown)


def test_convert_with_the_keyboard(isolated_home: Path) -> None:
    models = isolated_home / "models"  # the second default model folder
    models.mkdir()
    (models / "smollm2-hf").symlink_to(demo_hf_checkpoint(), target_is_directory=True)
    out_dir = Path(os.environ["XDG_DATA_HOME"]) / "tuillm" / "models"  # the first: the default output folder
    tmux = Tmux(isolated_home / "exit-status")
    keys = lambda *k: tmux("send-keys", "-t", "main", *k)  # noqa: E731
    try:
        tmux.start([tuillm_binary()], {k: os.environ[k] for k in ENV_KEYS})
        tmux.wait_for(lambda s: "Enter sends" in s and "Quit" in line_from_bottom(s, 1), "the Chat pane")
        keys("F4")
        tmux.wait_for(lambda s: "From" in s and "^s Start" in line_from_bottom(s, 1), "the Convert pane")
        # The source list has the focus: open it; the checkpoint is its last entry, after the demo GGUF (End: where
        # the highlight starts is Textual's).
        keys("Enter")
        tmux.wait_for(lambda s: "smollm2-hf (HF checkpoint, 135M)" in s, "the source list")
        keys("End")
        time.sleep(0.3)
        keys("Enter")
        screen = tmux.wait_for(lambda s: "HF checkpoint → convert" in s and "smollm2-hf-Q8_0.gguf" in s
                               and shows_folder(s, out_dir), "the estimates and the output folder")
        q8_line = next(line for line in screen.splitlines() if "smollm2-hf-Q8_0.gguf" in line)
        assert "q8_0" in q8_line and "MiB" in q8_line
        # One key at a time: Textual routes a key to whatever has the focus when it arrives, and a burst can
        # overtake the focus change of the key before it.
        for key in ("Tab", "Tab", "Tab", "Down", "Space"):  # source path, folder, the type list; q8_0 is second
            keys(key)
            time.sleep(0.3)
        tmux.wait_for(lambda s: "1 ticked, ~138 MiB in all" in s, "q8_0 ticked")
        for key in ("Tab", "Tab", "Space"):  # past the Matrix row, the quality report (on by default): off, short test
            keys(key)
            time.sleep(0.3)
        keys("C-s")
        screen = tmux.wait_for(lambda s: "done: 1 file written" in s, "the end of the job")
        # q8_0 alone and no report: written directly, no 16-bit intermediate.
        assert "wrote" in screen and "(temp)" not in screen and "top-1" not in screen
        assert sorted(p.name for p in out_dir.iterdir()) == ["smollm2-hf-Q8_0.gguf"]

        keys("F3")  # the new file is in Models already
        tmux.wait_for(lambda s: "smollm2-hf-Q8_0" in s and "Q8_0" in s, "the new model in Models")

        tmux.quit()
    finally:
        tmux.kill()
