"""The Train pane with Method dpo, on the real app at 80x24: a bad pair file is refused in the preview with its
line; a good one is previewed pair by pair (chosen, then rejected, the answers marked) and trains (a tiny random
model, two steps) with the DPO metrics in the log and an adapter that records its method."""

from __future__ import annotations

import json
from pathlib import Path

from tests.checkpoints import tiny_random_checkpoint
from tests.core.train.test_dpo import preference_rows, write_rows
from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, record_notifications
from tests.tui.panes.test_train import TINY, log_text, open_pane, train_pane, wait_job


@run_async
async def test_dpo_from_the_pane(tmp_path: Path) -> None:
    base = tiny_random_checkpoint("llama", tmp_path / "tiny")
    bad = write_rows(tmp_path / "bad.jsonl", [*preference_rows(("cats",)), {"prompt": "Hi", "chosen": "Yo"}])
    data = write_rows(tmp_path / "pairs.jsonl", preference_rows(("cats", "dogs", "owls", "tea", "snow", "maps")))
    out = tmp_path / "adapter"
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, str(base), bad, output=out, method="dpo", **TINY)
        pane = train_pane(app)
        await until(pilot, lambda: pane.preview_error is not None, "the preview's error")
        assert "1 bad preference pair (line 2; line 2: 'chosen' and 'rejected' missing)" in pane.preview_error

        app.query_one("#train-data").value = str(data)
        pane.action_preview()
        await until(pilot, lambda: pane.preview is not None and pane.preview.path == data, "the preview")
        preview = app.query_one("#train-preview").content
        assert "pairs.jsonl: 6 preference pairs, pairs format" in preview.plain
        assert "chosen, line 1: " in preview.plain and "rejected, line 1: " in preview.plain
        trained = [preview.plain[s.start:s.end] for s in preview.spans if s.style == "bold green"][1:]  # legend
        assert trained[0].startswith("Ahoy! Cats can be lovely.") and trained[1].startswith("Cats can be lovely.")
        assert all("Tell me something" not in t for t in trained)

        await pilot.press("ctrl+s")
        await wait_job(pilot, "the DPO run")
        assert not [s for s in seen if "failed" in s], seen
        log = " ".join(log_text(app).split())  # the log wraps its lines at the pane's width
        # Step 1: the adapter is zero, so the policy is the reference: the loss is log 2 and no reward is won.
        assert "step 1/2: loss 0.6931 eval" in log and "reward margin 0.000, reward accuracy 0.000, eval reward" in log
        assert "step 2/2: loss" in log and "training preference pairs" in log
    assert json.loads((out / "training.json").read_text())["method"] == "dpo"
