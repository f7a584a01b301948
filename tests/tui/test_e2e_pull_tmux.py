"""End to end: the real ``tuillm`` in tmux at 80x24 downloads a model from the (local) Hub with the keyboard alone:
Models pane, p, search, a repository, the quant that fits, progress, and the new model listed with the cursor on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hub_server import DEMO_REPO, FakeHub
from tests.tui.test_e2e_tmux import Tmux, demo_row, tuillm_binary

pytestmark = pytest.mark.slow

ENV_KEYS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS",
            "HF_HUB_OFFLINE", "HF_ENDPOINT")
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


def test_download_from_the_models_pane_with_the_keyboard(isolated_home: Path, hub: FakeHub) -> None:
    tmux = Tmux(isolated_home / "exit-status")
    try:
        tmux.start([tuillm_binary()], {k: os.environ[k] for k in ENV_KEYS})
        tmux.wait_for(lambda s: "Enter sends" in s, "the Chat pane")
        tmux("send-keys", "-t", "main", "F3")
        tmux.wait_for(lambda s: demo_row(s) is not None and "p Download" in s, "the Models pane, its footer naming p")
        tmux("send-keys", "-t", "main", "p")
        tmux.wait_for(lambda s: "Download from the Hugging Face Hub" in s, "the dialog")
        tmux("send-keys", "-t", "main", "smollm2", "Enter")
        tmux.wait_for(lambda s: DEMO_REPO in s and "Enter lists" in s, "the search results")
        tmux("send-keys", "-t", "main", "Enter")
        tmux.wait_for(lambda s: "Q8_0" in s and "the usual pick" in s
                      and any("Q4_K_M" in line and "*" in line and "fits" in line for line in s.splitlines()),
                      "the quants with their fit, Q4_K_M marked")
        tmux("send-keys", "-t", "main", "Enter")  # the cursor is on the quant that fits
        # Listed, with the cursor on it: the advice line under the table names the downloaded model.
        tmux.wait_for(lambda s: "Download from the Hugging Face Hub" not in s and "2 models" in s
                      and any(line.strip().startswith("bartowski/SmolLM2-13") for line in s.splitlines())
                      and any(line.strip().startswith(f"{DEMO_REPO}/{Q4}:") for line in s.splitlines()),
                      "the download done, the model listed and its advice line")
        assert hub.served("GET", "/cdn/")
        tmux.quit()
    finally:
        tmux.kill()
