"""The Train pane's Quantize base (QLoRA) on a machine without CUDA: Start is refused with one line in a
notification, after the data checks and before the model loads, and nothing is written."""

from __future__ import annotations

from pathlib import Path

from tests.checkpoints import demo_hf_checkpoint
from tests.core.train_facts import write_fact_dataset
from tests.tui.app_helpers import run_async, until
from tests.tui.chat_helpers import SIZE, chat_app, record_notifications
from tests.tui.panes.test_train import log_text, open_pane, train_pane, wait_job


@run_async
async def test_qlora_without_cuda_is_refused_in_a_notification(tmp_path: Path) -> None:
    import torch

    assert not torch.cuda.is_available(), "this test is the refusal; a CUDA machine would start the 4-bit run"
    data = write_fact_dataset(tmp_path / "fact.jsonl", 4)
    app = chat_app(tmp_path)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_pane(pilot, str(demo_hf_checkpoint()), data, quant="4bit", device="cpu",
                        output=tmp_path / "out")
        seen.clear()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("Train failed" in s for s in seen), "the refusal")
        await wait_job(pilot, "the refused job ending")
        refusal = next(s for s in seen if "Train failed" in s)
        assert "--quant 4bit (QLoRA) needs a CUDA GPU (bitsandbytes' 4-bit kernels); this run is on cpu" in refusal
        assert "Traceback" not in refusal and "loading" not in log_text(app)
        assert train_pane(app).job is None and not (tmp_path / "out").exists()
